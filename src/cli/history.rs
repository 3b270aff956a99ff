//! `kiln history`: the steps that made an image, newest first.

use super::{Error, format, open_store};
use kiln::image::Image;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln history`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The image: a name or an id.
    image: String,
    /// Show full commands.
    #[arg(long)]
    no_trunc: bool,
}

/// Prints IMAGE, CREATED, CREATED BY, SIZE, COMMENT per history entry.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let image = Image::resolve(&store, &args.image)?;
    let mut sizes = image.manifest.layers().iter().map(|l| l.size());
    let mut rows: Vec<Vec<String>> = image
        .config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer.unwrap_or(false) {
                0
            } else {
                sizes.next().unwrap_or(0)
            };
            let mut by = h.created_by.clone().unwrap_or_default();
            if !args.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            vec![
                "<missing>".to_string(),
                format::ago(h.created.as_deref()),
                by,
                format::size(size),
                h.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = image.id.short().to_string();
    }
    rows.insert(
        0,
        ["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"]
            .map(String::from)
            .to_vec(),
    );
    std::io::stdout()
        .lock()
        .write_all(format::table(&rows).as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
