//! The build context: what `.dockerignore` leaves in, and content digests
//! of COPY sources. It never writes the context; the stat cache of its
//! digests is kept in the store.

pub mod digest;
pub mod ignore;
