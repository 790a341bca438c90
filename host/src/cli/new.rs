//! `platform new <service> --lang rust|python|javascript [--port N] [--dir D]`: a working
//! service from a template (`templates/` in the repository, built into the binary so an
//! installed `platform` needs no checkout): a route table, a database table with its
//! migration for both backends, the cache and config, an authenticated route that reads the
//! caller, a message handler stub, unit tests in the language's own runner (`cargo test`,
//! unittest, `node --test`), the platform's WIT, and the service's entry in platform.toml.
//! The file is edited in place: its comments and layout stay.

use super::{load_config, CommandError, CommandResult};
use anyhow::{anyhow, Context};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct NewArgs {
    /// The service's name: lowercase letters and digits, starting with a letter, words joined
    /// by single `_`.
    name: String,
    /// The language of its component.
    #[arg(long, value_enum)]
    lang: Language,
    /// Its port; by default the one after the highest port the configuration uses.
    #[arg(long)]
    port: Option<u16>,
    /// Where its sources go, relative to the configuration file (default `services/<name>`).
    #[arg(long)]
    dir: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Language {
    /// wit-bindgen, built by cargo (`rustup target add wasm32-wasip2`).
    Rust,
    /// componentize-py (`python3 -m pip install componentize-py==0.25.1`).
    Python,
    /// componentize-js (`npm ci` in the service's folder installs the pinned version).
    Javascript,
}

impl Language {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Language::Rust => RUST,
            Language::Python => PYTHON,
            Language::Javascript => JAVASCRIPT,
        }
    }

    fn flag(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::Javascript => "javascript",
        }
    }

    /// The build command, run in the configuration's folder.
    fn build_command(self, name: &str, dir: &str) -> String {
        match self {
            Language::Rust => format!("cd {dir} && cargo build --release --target wasm32-wasip2"),
            Language::Python => format!(
                "cd {dir} && mkdir -p target && componentize-py -d wit -w {} componentize app -o target/{name}.wasm",
                wit_name(name)
            ),
            Language::Javascript => format!("cd {dir} && node build.mjs"),
        }
    }

    /// Where the build command writes the component, relative to the configuration's folder.
    fn component(self, name: &str, dir: &str) -> String {
        match self {
            // Cargo's own place for a cdylib; a package name keeps its `_` in the file name.
            Language::Rust => format!("{dir}/target/wasm32-wasip2/release/{name}.wasm"),
            Language::Python | Language::Javascript => format!("{dir}/target/{name}.wasm"),
        }
    }

    /// What `--watch` rebuilds on: the sources, not the folder, whose target/ the build
    /// writes.
    fn sources(self) -> &'static [&'static str] {
        match self {
            Language::Rust => &["src", "Cargo.toml", "wit"],
            Language::Python => &["app.py", "service.py", "wit"],
            Language::Javascript => &["app.js", "service.js", "wit"],
        }
    }

    /// What to run once before the first build.
    fn setup(self, dir: &Path) -> String {
        match self {
            Language::Rust => "rustup target add wasm32-wasip2".to_string(),
            Language::Python => "python3 -m pip install componentize-py==0.25.1".to_string(),
            Language::Javascript => format!("npm ci --prefix {}", dir.display()),
        }
    }

    fn memory_limit_mb(self) -> i64 {
        match self {
            // The repository's own Rust services run in 64.
            Language::Rust => 64,
            // The interpreter (CPython, SpiderMonkey) is in the component.
            Language::Python | Language::Javascript => 128,
        }
    }
}

/// One file of a template, `{{name}}` standing for the service's name and `{{wit_name}}` for
/// its WIT spelling (see [`wit_name`]).
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

macro_rules! template_files {
    ($folder:literal: $($path:literal),* $(,)?) => {
        &[$(TemplateFile {
            path: $path,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../templates/", $folder, "/", $path)),
        }),*]
    };
}

const RUST: &[TemplateFile] = template_files!("rust":
    "Cargo.toml", ".cargo/config.toml", "src/lib.rs", "src/service.rs", "README.md", ".gitignore",
    "wit/world.wit",
);

const PYTHON: &[TemplateFile] = template_files!("python":
    "app.py", "service.py", "test_service.py", "README.md", ".gitignore", "wit/world.wit",
);

const JAVASCRIPT: &[TemplateFile] = template_files!("javascript":
    "app.js", "service.js", "service.test.js", "build.mjs", "package.json", "package-lock.json",
    "README.md", ".gitignore", "wit/world.wit",
);

/// The schema every template's service starts with, one file per backend.
const MIGRATIONS: &[TemplateFile] = template_files!("migrations":
    "postgres/0001_init.sql", "sqlite/0001_init.sql",
);

macro_rules! wit_files {
    ($($file:literal),* $(,)?) => {
        &[$(TemplateFile {
            path: $file,
            text: include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit/", $file)),
        }),*]
    };
}

/// The platform's WIT package, which a template's world imports from `wit/deps/platform`.
const WIT: &[TemplateFile] = wit_files!(
    "auth.wit",
    "cache.wit",
    "config.wit",
    "database.wit",
    "http.wit",
    "messaging.wit",
    "outgoing-http.wit",
    "schedule.wit",
    "world.wit",
);

pub fn run(config_path: &Path, args: NewArgs) -> CommandResult {
    let config = load_config(config_path)?;
    check_name(&args.name).map_err(CommandError::usage)?;
    if config.services.contains_key(&args.name) {
        return Err(CommandError::usage(anyhow!(
            "a service named `{}` is already in {}",
            args.name,
            config_path.display()
        )));
    }
    let port = match args.port {
        Some(port) => {
            if let Some((other, _)) = config
                .services
                .iter()
                .find(|(_, service)| service.port == port)
            {
                return Err(CommandError::usage(anyhow!(
                    "port {port} is taken by the service `{other}`; choose another with --port"
                )));
            }
            port
        }
        None => config
            .services
            .values()
            .map(|service| service.port)
            .max()
            .map_or(8001, |highest| highest + 1),
    };
    let dir = args
        .dir
        .unwrap_or_else(|| Path::new("services").join(&args.name));
    let sources = config.resolve(&dir);
    if sources.exists()
        && sources
            .read_dir()
            .map_or(true, |mut entries| entries.next().is_some())
    {
        return Err(CommandError::usage(anyhow!(
            "{} already exists and is not empty",
            sources.display()
        )));
    }
    let migrations = config.resolve(&config.database.migrations).join(&args.name);
    if migrations.exists() {
        return Err(CommandError::usage(anyhow!(
            "{} already exists: another service's migrations?",
            migrations.display()
        )));
    }

    let entry = service_entry(args.lang, &args.name, port, &dir);
    // The entry first: a file that does not parse is refused before anything is written.
    let edited = with_entry(config_path, &args.name, entry)?;
    write_files(&sources, args.lang.files(), &args.name)?;
    write_files(&sources.join("wit/deps/platform"), WIT, &args.name)?;
    write_files(&migrations, MIGRATIONS, &args.name)?;
    std::fs::write(config_path, edited)
        .with_context(|| format!("writing {}", config_path.display()))?;
    println!(
        "created the {} service in {} (port {port}), its migrations in {}, and its entry in {}",
        args.name,
        sources.display(),
        migrations.display(),
        config_path.display()
    );
    println!(
        "next: `{}` once, `platform build {}`, then `platform up` (or `platform up --watch`)",
        args.lang.setup(&sources),
        args.name
    );
    Ok(())
}

/// A name that is a database name, a Cargo package and a Python module, and, with its `_`
/// made `-` ([`wit_name`]), a WIT package and world name: WIT allows no empty word, so no
/// `__` and no `_` at the end.
fn check_name(name: &str) -> anyhow::Result<()> {
    let starts_well = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    if !starts_well
        || name.len() > 40
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        || name.split('_').any(str::is_empty)
    {
        anyhow::bail!(
            "`{name}` is not a service name: use lowercase letters and digits, starting with a letter, words joined by single `_` (at most 40)"
        );
    }
    Ok(())
}

/// The service's name as WIT spells identifiers: kebab-case (`stock_report` is
/// `stock-report`), which WIT tools also expect where they take a world's name.
fn wit_name(name: &str) -> String {
    name.replace('_', "-")
}

/// The service's table for platform.toml.
fn service_entry(language: Language, name: &str, port: u16, dir: &Path) -> toml_edit::Table {
    let dir = dir.display().to_string();
    let mut table = toml_edit::Table::new();
    table.decor_mut().set_prefix(format!(
        "\n# Created by `platform new {name} --lang {}`: sources in {dir}, schema in migrations/{name}.\n",
        language.flag()
    ));
    table["port"] = toml_edit::value(i64::from(port));
    table["component"] = toml_edit::value(language.component(name, &dir));
    table["build"] = toml_edit::value(language.build_command(name, &dir));
    let watch: toml_edit::Array = language
        .sources()
        .iter()
        .map(|source| format!("{dir}/{source}"))
        .collect();
    table["watch"] = toml_edit::value(watch);
    table["database"] = toml_edit::value(name);
    let grants: toml_edit::Array = ["database", "cache", "config", "logging"]
        .into_iter()
        .collect();
    table["grants"] = toml_edit::value(grants);
    table["memory_limit_mb"] = toml_edit::value(language.memory_limit_mb());
    table["request_timeout_ms"] = toml_edit::value(10000);
    let mut config = toml_edit::Table::new();
    config["greeting"] = toml_edit::value("Hello");
    config["cache_ttl_seconds"] = toml_edit::value("30");
    table["config"] = toml_edit::Item::Table(config);
    table
}

/// platform.toml with `[services.<name>]` added at its end, the rest as it was.
fn with_entry(
    config_path: &Path,
    name: &str,
    entry: toml_edit::Table,
) -> Result<String, CommandError> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("reading {}", config_path.display()))
        .map_err(CommandError::usage)?;
    let mut document: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", config_path.display()))
        .map_err(CommandError::usage)?;
    let services = document
        .entry("services")
        .or_insert_with(|| {
            let mut services = toml_edit::Table::new();
            services.set_implicit(true);
            toml_edit::Item::Table(services)
        })
        .as_table_mut()
        .context("`services` in the configuration is not a table")
        .map_err(CommandError::usage)?;
    services.insert(name, toml_edit::Item::Table(entry));
    Ok(document.to_string())
}

fn write_files(root: &Path, files: &[TemplateFile], name: &str) -> anyhow::Result<()> {
    for file in files {
        let path = root.join(file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let text = file
            .text
            .replace("{{wit_name}}", &wit_name(name))
            .replace("{{name}}", name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WIT file added to the package must reach the templates too.
    #[test]
    fn templates_carry_every_wit_file_of_the_package() {
        let mut shipped: Vec<String> =
            std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../wit"))
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|name| name.ends_with(".wit"))
                .collect();
        shipped.sort();
        let embedded: Vec<&str> = WIT.iter().map(|file| file.path).collect();
        assert_eq!(shipped, embedded);
    }

    #[test]
    fn names_must_fit_wit_python_and_databases() {
        for good in ["reviews", "stock_report", "a1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Reviews",
            "1st",
            "stock-report",
            "stock__report",
            "report_",
            "a b",
            "x".repeat(41).as_str(),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    /// `package local:stock_report;` does not parse: every template names its world in
    /// WIT's spelling.
    #[test]
    fn worlds_are_named_in_kebab_case() {
        assert_eq!(wit_name("stock_report"), "stock-report");
        for language in <Language as clap::ValueEnum>::value_variants() {
            let world = language
                .files()
                .iter()
                .find(|file| file.path == "wit/world.wit")
                .unwrap();
            assert!(
                world.text.contains("package local:{{wit_name}};")
                    && world.text.contains("world {{wit_name}} {"),
                "{}",
                language.flag()
            );
        }
    }

    /// Cargo writes a cdylib under target/<triple>/release, named after the package.
    #[test]
    fn a_rust_entry_points_at_what_cargo_builds() {
        let entry = service_entry(
            Language::Rust,
            "stock_report",
            8002,
            Path::new("services/stock_report"),
        );
        assert_eq!(
            entry["component"].as_str(),
            Some("services/stock_report/target/wasm32-wasip2/release/stock_report.wasm")
        );
        assert_eq!(
            entry["build"].as_str(),
            Some("cd services/stock_report && cargo build --release --target wasm32-wasip2")
        );
        assert_eq!(entry["memory_limit_mb"].as_integer(), Some(64));
        let watched: Vec<&str> = entry["watch"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|path| path.as_str())
            .collect();
        assert_eq!(
            watched,
            [
                "services/stock_report/src",
                "services/stock_report/Cargo.toml",
                "services/stock_report/wit"
            ]
        );
    }

    #[test]
    fn the_entry_is_added_and_every_comment_stays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.toml");
        let original = "# the platform\n[host]\n# where\nbind = \"127.0.0.1\" # inline\n\n[services.user]\nport = 8001 # the user service\n";
        std::fs::write(&path, original).unwrap();
        let entry = service_entry(
            Language::Python,
            "reviews",
            8002,
            Path::new("services/reviews"),
        );
        let edited = with_entry(&path, "reviews", entry).unwrap();
        assert!(edited.starts_with(original), "{edited}");
        let parsed: toml::Table = edited.parse().unwrap();
        let reviews = &parsed["services"]["reviews"];
        assert_eq!(reviews["port"].as_integer(), Some(8002));
        assert_eq!(reviews["config"]["greeting"].as_str(), Some("Hello"));
        assert_eq!(parsed["services"]["user"]["port"].as_integer(), Some(8001));
    }
}
