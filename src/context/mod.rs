//! The build context: what `.dockerignore` leaves in, and (later) content
//! digests of COPY sources. Reads only; never writes.

pub mod ignore;
