//! `docs/wit.md`, the reference of every interface a component author imports or exports,
//! is generated from `wit/` and must match it: this test fails when the WIT changed and the
//! reference was not regenerated (`UPDATE_WIT_REFERENCE=1 cargo test -p platform --test
//! wit_reference` rewrites it).

use std::fmt::Write;
use std::path::Path;
use wit_parser::{
    Docs, Function, Handle, Interface, InterfaceId, Resolve, Type, TypeDefKind, TypeOwner,
    WorldItem, WorldKey,
};

const UPDATE: &str = "UPDATE_WIT_REFERENCE";

#[test]
fn the_wit_reference_matches_the_wit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut resolve = Resolve::default();
    let (package, _) = resolve
        .push_dir(root.join("wit"))
        .expect("wit/ parses and resolves");
    let reference = render(&resolve, package);
    let path = root.join("docs/wit.md");
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&path, &reference).expect("docs/wit.md is writable");
        return;
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == reference,
        "docs/wit.md does not match wit/: regenerate it with \
         `{UPDATE}=1 cargo test -p platform --test wit_reference`"
    );
}

fn render(resolve: &Resolve, package: wit_parser::PackageId) -> String {
    let package = &resolve.packages[package];
    let mut out = String::new();
    let name = &package.name;
    let version = name
        .version
        .as_ref()
        .map(|v| format!("@{v}"))
        .unwrap_or_default();
    let _ = write!(
        out,
        "# The `{}:{}{version}` WIT package\n\n\
         <!-- Generated from wit/ by host/tests/wit_reference.rs; do not edit by hand. -->\n\n\
         What a component imports from the platform and what it exports to it. Each \
         import must be granted to the service in platform.toml (`grants`), or the host \
         refuses the component when it is deployed, naming the import.\n\n\
         ## Names in each language\n\n\
         | WIT | Rust (wit-bindgen) | Python (componentize-py) | JavaScript (jco) |\n\
         |---|---|---|---|\n\
         | function `get-many` | `get_many` | `get_many` | `getMany` |\n\
         | record `row-set`, field `row-count` | struct `RowSet`, `row_count` | class `RowSet`, `row_count` | object, `rowCount` |\n\
         | variant `value`, case `int(s64)` | `Value::Int(i64)` | `Value_Int(int)` | `{{ tag: 'int', val: 5n }}` |\n\
         | enum `level`, case `warn` | `Level::Warn` | `Level.WARN` | `'warn'` |\n\
         | `option<T>` | `Option<T>` | `T` or `None` | `T` or `undefined` |\n\
         | `result<T, E>` | `Result<T, E>` | returns `T`, raises `Err(E)` | returns `T`, throws an error whose `payload` is `E` |\n\
         | `s64`, `u64` | `i64`, `u64` | `int` | `BigInt` |\n\
         | `list<u8>` | `Vec<u8>` | `bytes` | `Uint8Array` |\n\n",
        name.namespace, name.name
    );

    let mut worlds: Vec<_> = package.worlds.values().collect();
    worlds.sort_by_key(|world| &resolve.worlds[**world].name);
    for world in worlds {
        let world = &resolve.worlds[*world];
        let _ = writeln!(out, "## World `{}`\n", world.name);
        push_docs(&mut out, &world.docs);
        for (direction, items) in [("Imports", &world.imports), ("Exports", &world.exports)] {
            let names: Vec<String> = items
                .iter()
                .filter_map(|(key, item)| match item {
                    WorldItem::Interface { id, .. } => Some(interface_link(resolve, key, *id)),
                    _ => None,
                })
                .collect();
            if !names.is_empty() {
                let _ = writeln!(out, "{direction}: {}.\n", names.join(", "));
            }
        }
    }

    let mut interfaces: Vec<(&String, &InterfaceId)> = package.interfaces.iter().collect();
    interfaces.sort_by_key(|(name, _)| *name);
    for (name, id) in interfaces {
        push_interface(&mut out, resolve, name, &resolve.interfaces[*id]);
    }
    out
}

fn interface_link(resolve: &Resolve, key: &WorldKey, id: InterfaceId) -> String {
    let name = match key {
        WorldKey::Name(name) => name.clone(),
        WorldKey::Interface(_) => resolve.interfaces[id].name.clone().unwrap_or_default(),
    };
    format!("[`{name}`](#interface-{name})")
}

fn push_interface(out: &mut String, resolve: &Resolve, name: &str, interface: &Interface) {
    let _ = writeln!(out, "## Interface `{name}`\n");
    push_docs(out, &interface.docs);
    for (type_name, id) in &interface.types {
        let def = &resolve.types[*id];
        // A `use` of another interface's type: named where it is defined.
        if let TypeDefKind::Type(Type::Id(original)) = def.kind {
            if let TypeOwner::Interface(owner) = resolve.types[original].owner {
                if resolve.interfaces[owner].name.as_deref() != Some(name) {
                    let owner = resolve.interfaces[owner].name.clone().unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "- `{type_name}`: uses [`{owner}`](#interface-{owner})'s.\n"
                    );
                    continue;
                }
            }
        }
        push_type(out, resolve, type_name, &def.kind, &def.docs);
    }
    for function in interface.functions.values() {
        push_function(out, resolve, function);
    }
}

fn push_type(out: &mut String, resolve: &Resolve, name: &str, kind: &TypeDefKind, docs: &Docs) {
    let (keyword, members): (&str, Vec<(String, &Docs)>) = match kind {
        TypeDefKind::Record(record) => (
            "record",
            record
                .fields
                .iter()
                .map(|field| {
                    let ty = type_name(resolve, &field.ty);
                    (format!("`{}: {ty}`", field.name), &field.docs)
                })
                .collect(),
        ),
        TypeDefKind::Variant(variant) => (
            "variant",
            variant
                .cases
                .iter()
                .map(|case| {
                    let payload = case
                        .ty
                        .map(|ty| format!("({})", type_name(resolve, &ty)))
                        .unwrap_or_default();
                    (format!("`{}{payload}`", case.name), &case.docs)
                })
                .collect(),
        ),
        TypeDefKind::Enum(cases) => (
            "enum",
            cases
                .cases
                .iter()
                .map(|case| (format!("`{}`", case.name), &case.docs))
                .collect(),
        ),
        TypeDefKind::Flags(flags) => (
            "flags",
            flags
                .flags
                .iter()
                .map(|flag| (format!("`{}`", flag.name), &flag.docs))
                .collect(),
        ),
        TypeDefKind::Resource => ("resource", Vec::new()),
        other => {
            let _ = writeln!(
                out,
                "### type `{name}` = `{}`\n",
                anonymous_type(resolve, other)
            );
            push_docs(out, docs);
            return;
        }
    };
    let _ = writeln!(out, "### {keyword} `{name}`\n");
    push_docs(out, docs);
    for (member, docs) in &members {
        let text = first_paragraph(docs);
        if text.is_empty() {
            let _ = writeln!(out, "- {member}");
        } else {
            let _ = writeln!(out, "- {member}: {text}");
        }
    }
    if !members.is_empty() {
        out.push('\n');
    }
}

fn push_function(out: &mut String, resolve: &Resolve, function: &Function) {
    let params: Vec<String> = function
        .params
        .iter()
        .map(|param| format!("{}: {}", param.name, type_name(resolve, &param.ty)))
        .collect();
    let result = function
        .result
        .map(|ty| format!(" -> {}", type_name(resolve, &ty)))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "### `{}: func({}){result}`\n",
        function.name,
        params.join(", ")
    );
    push_docs(out, &function.docs);
}

fn push_docs(out: &mut String, docs: &Docs) {
    if let Some(text) = &docs.contents {
        let text = text.trim();
        if !text.is_empty() {
            let _ = writeln!(out, "{text}\n");
        }
    }
}

/// A member's docs on one line of a list.
fn first_paragraph(docs: &Docs) -> String {
    let text = docs.contents.as_deref().unwrap_or_default().trim();
    text.split("\n\n")
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn type_name(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let def = &resolve.types[*id];
            match &def.name {
                Some(name) => name.clone(),
                None => anonymous_type(resolve, &def.kind),
            }
        }
    }
}

fn anonymous_type(resolve: &Resolve, kind: &TypeDefKind) -> String {
    let name = |ty: &Type| type_name(resolve, ty);
    match kind {
        TypeDefKind::Option(ty) => format!("option<{}>", name(ty)),
        TypeDefKind::List(ty) => format!("list<{}>", name(ty)),
        TypeDefKind::FixedLengthList(ty, size) => format!("list<{}, {size}>", name(ty)),
        TypeDefKind::Map(key, value) => format!("map<{}, {}>", name(key), name(value)),
        TypeDefKind::Tuple(tuple) => format!(
            "tuple<{}>",
            tuple.types.iter().map(name).collect::<Vec<_>>().join(", ")
        ),
        TypeDefKind::Result(result) => match (&result.ok, &result.err) {
            (None, None) => "result".into(),
            (Some(ok), None) => format!("result<{}>", name(ok)),
            (None, Some(err)) => format!("result<_, {}>", name(err)),
            (Some(ok), Some(err)) => format!("result<{}, {}>", name(ok), name(err)),
        },
        TypeDefKind::Handle(Handle::Own(id)) => type_name(resolve, &Type::Id(*id)),
        TypeDefKind::Handle(Handle::Borrow(id)) => {
            format!("borrow<{}>", type_name(resolve, &Type::Id(*id)))
        }
        TypeDefKind::Future(ty) => match ty {
            Some(ty) => format!("future<{}>", name(ty)),
            None => "future".into(),
        },
        TypeDefKind::Stream(ty) => match ty {
            Some(ty) => format!("stream<{}>", name(ty)),
            None => "stream".into(),
        },
        TypeDefKind::Type(ty) => name(ty),
        TypeDefKind::Record(_)
        | TypeDefKind::Variant(_)
        | TypeDefKind::Enum(_)
        | TypeDefKind::Flags(_)
        | TypeDefKind::Resource
        | TypeDefKind::Unknown => "(unnamed)".into(),
    }
}
