//! `kiln images`: the tagged images, as a table or JSON.

use super::{Error, format, open_store};
use kiln::image::{Image, manifest_digest};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `kiln images`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `table` (default) or `json`.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

/// Lists the images.
pub fn run(root: Option<PathBuf>, args: Args) -> Result<ExitCode, Error> {
    let store = open_store(root)?;
    let mut rows = vec![
        [
            "REPOSITORY",
            "TAG",
            "IMAGE ID",
            "CREATED",
            "SIZE",
            "PLATFORMS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    let mut json = Vec::new();
    for (name, d) in store.images()? {
        let image = Image::load(&store, &manifest_digest(&d)?)?;
        // An image without a name is docker's `<none> <none>`.
        let name = name.unwrap_or_else(|| "<none>:<none>".into());
        let (repo, tag) = name.rsplit_once(':').unwrap_or((&name, ""));
        // A multi-platform image lists each of its index's platforms.
        let platforms = image.platforms(&store)?;
        rows.push(vec![
            repo.to_string(),
            tag.to_string(),
            image.id.short().to_string(),
            format::ago(image.config.created.as_deref()),
            format::size(image.size()),
            platforms.join(","),
        ]);
        json.push(serde_json::json!({
            "Repository": repo,
            "Tag": tag,
            "ID": image.id.to_string(),
            "Digest": image.entry_digest().to_string(),
            "Platforms": platforms,
            "CreatedAt": image.config.created,
            "Size": image.size(),
        }));
    }
    let out = if args.format == "json" {
        serde_json::to_string_pretty(&json).map_err(std::io::Error::other)? + "\n"
    } else {
        format::table(&rows)
    };
    std::io::stdout().lock().write_all(out.as_bytes())?;
    Ok(ExitCode::SUCCESS)
}
