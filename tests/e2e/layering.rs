//! The import directions inside the proxy and the broker, checked on their
//! sources: a lower module never imports a higher one. A `crate::…` path in
//! code (comments aside) that a crate's table does not allow fails the
//! test, naming the file and the line. The proxy's table is the one in
//! `proxy/src/lib.rs`; `docs/layout.md` lists both. Which crate may depend
//! on which is checked by `readme::crate_imports_run_one_way`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// A crate's layering: each top-level module (a folder, or a file at the
/// crate root) and the modules it may import besides itself; `top` may
/// import anything.
struct Layers {
    allowed: &'static [(&'static str, &'static [&'static str])],
    top: &'static [&'static str],
}

/// The proxy: codec < auth < config < cluster < filter < net, admin < proxy.
const PROXY: Layers = Layers {
    allowed: &[
        ("codec", &[]),
        ("error", &[]),
        ("tasks", &[]),
        ("metrics", &[]),
        ("tls", &["error"]),
        ("auth", &["error"]),
        ("config", &["auth", "tls", "error"]),
        ("cluster", &["codec", "config", "error", "tls"]),
        (
            "filter",
            &["cluster", "auth", "codec", "config", "error", "metrics"],
        ),
        (
            "net",
            &[
                "filter", "cluster", "auth", "codec", "config", "error", "tls", "tasks", "metrics",
            ],
        ),
        (
            "admin",
            &["auth", "cluster", "config", "error", "tasks", "metrics"],
        ),
    ],
    top: &["proxy", "lib"],
};

/// The broker's lower modules (the committer, the group coordinator, the
/// state, storage, the log format, batches, topic configs) are handed what
/// they use and never reach up into the composition (`broker`), the
/// connection loop (`server`) or the request handlers (`handlers`).
const BROKER_LOWER: &[&str] = &[
    "batch",
    "catalog",
    "committer",
    "error",
    "groups",
    "log",
    "members",
    "meta",
    "meta_log",
    "state",
    "storage",
    "topic_config",
];
const BROKER: Layers = Layers {
    allowed: &[
        ("batch", BROKER_LOWER),
        ("catalog", BROKER_LOWER),
        ("committer", BROKER_LOWER),
        ("error", BROKER_LOWER),
        ("groups", BROKER_LOWER),
        ("log", BROKER_LOWER),
        ("members", BROKER_LOWER),
        ("meta", BROKER_LOWER),
        ("meta_log", BROKER_LOWER),
        ("state", BROKER_LOWER),
        ("storage", BROKER_LOWER),
        ("topic_config", BROKER_LOWER),
    ],
    top: &["lib", "broker", "server", "handlers"],
};

fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("the crate's sources are readable")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The line without its `//` comment (a `//` inside a string literal, as
/// in a URL, does not start one).
fn code_of(line: &str) -> &str {
    let mut in_str = false;
    let mut prev = '\0';
    for (i, c) in line.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            '/' if !in_str && prev == '/' => return &line[..i - 1],
            _ => {}
        }
        prev = c;
    }
    line
}

/// The top-level modules a line of code names through `crate::`,
/// including each name of a `crate::{a, b::c}` group.
fn imports(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        // `gatehouse_audit::…` and the like end in "crate"? Only a word
        // boundary before `crate` counts.
        let before = rest[..i].chars().last();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.push(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push(name);
        }
    }
    out
}

/// Every import of `src` the table forbids: (file, line, module).
fn violations(src: &Path, layers: &Layers) -> Vec<String> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let known: BTreeSet<&str> = layers
        .allowed
        .iter()
        .map(|(m, _)| *m)
        .chain(layers.top.iter().copied())
        .collect();
    let mut found = Vec::new();
    for file in files {
        let rel = file.strip_prefix(src).expect("under src");
        let first = rel
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .unwrap_or_default();
        let module = first.trim_end_matches(".rs");
        if layers.top.contains(&module) {
            continue;
        }
        let Some((_, allowed)) = layers.allowed.iter().find(|(m, _)| *m == module) else {
            found.push(format!(
                "{}: module `{module}` is not in the layering table",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("a source file is readable");
        for (n, line) in text.lines().enumerate() {
            for name in imports(code_of(line)) {
                if name == module || allowed.contains(&name.as_str()) {
                    continue;
                }
                if !known.contains(name.as_str()) {
                    found.push(format!(
                        "{}:{}: `crate::{name}` is not a module of the layering table",
                        rel.display(),
                        n + 1
                    ));
                    continue;
                }
                found.push(format!(
                    "{}:{}: `{module}` imports `crate::{name}`; it may import only {allowed:?}",
                    rel.display(),
                    n + 1
                ));
            }
        }
    }
    found
}

#[test]
fn proxy_folders_never_import_higher_ones() {
    let found = violations(&crate_src("proxy"), &PROXY);
    assert!(found.is_empty(), "forbidden imports:\n{}", found.join("\n"));
}

#[test]
fn broker_lower_modules_never_reach_up() {
    let found = violations(&crate_src("broker"), &BROKER);
    assert!(found.is_empty(), "forbidden imports:\n{}", found.join("\n"));
}

#[test]
fn the_check_sees_what_it_must() {
    assert_eq!(imports("use crate::filter::Target;"), ["filter"]);
    assert_eq!(
        imports("use crate::{codec::records, net::session};"),
        ["codec", "net"]
    );
    assert_eq!(
        imports("x = gatehouse_crate::y; let a = 1;"),
        Vec::<String>::new()
    );
    assert_eq!(
        imports(code_of("let a = 1; // crate::net::x")),
        Vec::<String>::new()
    );
    assert_eq!(
        imports(code_of(r#"let u = "http://x"; crate::net::y"#)),
        ["net"]
    );
    // A forbidden import in a lower folder is found.
    let dir = tempfile::tempdir().expect("a temporary directory");
    std::fs::create_dir_all(dir.path().join("codec")).expect("mkdir");
    std::fs::write(
        dir.path().join("codec/records.rs"),
        "//! crate::net in a comment is fine\nuse crate::net::session::run;\n",
    )
    .expect("write");
    let found = violations(dir.path(), &PROXY);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("codec/records.rs:2"), "{found:?}");
}
