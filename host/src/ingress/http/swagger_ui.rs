//! Swagger UI's files, shipped inside the binary, so that every service's `/docs` renders
//! without a network (offline, in an air-gapped cluster) and under a content-security
//! policy that allows nothing but the host's own files.
//!
//! The files come from the Swagger UI release archive the `utoipa-swagger-ui-vendored` crate
//! carries (its version is pinned in Cargo.toml), read from the archive the first time one
//! is asked for and kept in memory.

use bytes::Bytes;
use std::io::Read;
use std::sync::OnceLock;

/// The docs page's own script: Swagger UI, pointed at the service's document. A file, not an
/// inline script, so the policy needs no `unsafe-inline` for scripts.
const INITIALIZER: &str = r##"window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
});
"##;

/// What the docs page may load: only this host's files (Swagger UI sets inline styles and
/// uses `data:` images for its icons).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; \
     connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Where a file's bytes come from.
#[derive(Clone, Copy)]
enum Source {
    /// A file of the archive's `dist/` folder.
    Archive(&'static str),
    /// Text of this module.
    Text(&'static str),
}

/// The files under `/docs/`: path, source, content type.
const ASSETS: [(&str, Source, &str); 3] = [
    (
        "/docs/swagger-ui.css",
        Source::Archive("swagger-ui.css"),
        "text/css; charset=utf-8",
    ),
    (
        "/docs/swagger-ui-bundle.js",
        Source::Archive("swagger-ui-bundle.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/docs/swagger-initializer.js",
        Source::Text(INITIALIZER),
        "text/javascript; charset=utf-8",
    ),
];

/// The body and content type of the file at `path`, if it is one of [`ASSETS`].
pub fn asset(path: &str) -> Option<(Bytes, &'static str)> {
    let index = ASSETS.iter().position(|(served, ..)| *served == path)?;
    let (_, source, content_type) = ASSETS[index];
    let body = match source {
        Source::Archive(_) => FILES.get_or_init(extract)[index].clone(),
        Source::Text(text) => Bytes::from_static(text.as_bytes()),
    };
    Some((body, content_type))
}

/// The archive's files, in [`ASSETS`] order (a text's slot stays empty).
static FILES: OnceLock<Vec<Bytes>> = OnceLock::new();

fn extract() -> Vec<Bytes> {
    let archive = std::io::Cursor::new(utoipa_swagger_ui_vendored::SWAGGER_UI_VENDORED);
    let mut archive = zip::ZipArchive::new(archive).expect("the vendored Swagger UI archive opens");
    ASSETS
        .iter()
        .map(|(_, source, _)| {
            let Source::Archive(file) = source else {
                return Bytes::new();
            };
            let suffix = format!("/dist/{file}");
            let name = archive
                .file_names()
                .filter_map(Result::ok)
                .find(|name| name.ends_with(&suffix))
                .map(|name| name.into_owned())
                .unwrap_or_else(|| panic!("the vendored Swagger UI has no {suffix}"));
            let mut entry = archive.by_name(&name).expect("a listed entry");
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry
                .read_to_end(&mut bytes)
                .expect("the vendored Swagger UI archive reads");
            Bytes::from(bytes)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_in_the_binary() {
        let (bundle, kind) = asset("/docs/swagger-ui-bundle.js").unwrap();
        assert!(kind.starts_with("text/javascript"));
        assert!(
            bundle.len() > 100_000,
            "the whole bundle: {} bytes",
            bundle.len()
        );
        let (css, _) = asset("/docs/swagger-ui.css").unwrap();
        assert!(String::from_utf8_lossy(&css).contains(".swagger-ui"));
        let (init, _) = asset("/docs/swagger-initializer.js").unwrap();
        assert!(String::from_utf8_lossy(&init).contains("/openapi.json"));
        assert!(asset("/docs/other.js").is_none());
        // Reserved, so no component route can shadow them.
        for (path, ..) in ASSETS {
            assert!(
                crate::runtime::routes::RESERVED_PATHS.contains(&path),
                "{path}"
            );
        }
    }
}
