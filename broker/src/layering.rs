//! The broker's module layering, checked against its source.
//!
//! Lower modules (the committer, the group coordinator, state, storage, the
//! log format, batches, topic configs, errors) get what they need passed in;
//! they never reach up into the composition (`broker`), the connection
//! loop (`server`) or the request handlers (`handlers`).

use std::path::{Path, PathBuf};

/// Modules that must not reach up.
const LOWER: &[&str] = &[
    "batch",
    "committer",
    "error",
    "groups",
    "log",
    "state",
    "storage",
    "topic_config",
];

/// Modules that compose the lower ones; only these may name each other.
const UPPER: &[&str] = &["lib", "broker", "server", "handlers", "layering"];

/// What lower modules may not name.
const FORBIDDEN: &[&str] = &["broker", "server", "handlers"];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its top-level module name.
fn sources(dir: &Path, top: Option<&str>, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    entries.sort();
    for path in entries {
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string();
        if path.is_dir() {
            sources(&path, Some(top.unwrap_or(&stem)), out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push((top.unwrap_or(&stem).to_string(), path));
        }
    }
}

/// The source with comments and string/char literals blanked out, so only
/// code remains.
fn code_only(src: &str) -> String {
    let b: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r'
            && matches!(next, Some('"' | '#'))
            && !b[..i]
                .last()
                .is_some_and(|p| p.is_alphanumeric() || *p == '_')
        {
            // Raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (1..=hashes).all(|k| b.get(j + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && (next == Some('\\') || b.get(i + 2) == Some(&'\'')) {
            // A char literal ('x', '\n', '\u{..}'); a lone ' is a lifetime.
            i += 1;
            while i < b.len() && b[i] != '\'' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// The crate modules a file names through `crate::` paths (including
/// `use crate::{a, b::c}` groups). `super::` counts as `crate::` when the
/// file is a top-level module, whose parent is the crate root.
fn crate_modules(src: &str, top_level: bool) -> Vec<String> {
    let code: String = code_only(src)
        .split("::")
        .map(str::trim)
        .collect::<Vec<_>>()
        .join("::");
    let mut found = Vec::new();
    let mut roots = vec!["crate::"];
    if top_level {
        roots.push("super::");
    }
    for root in roots {
        for (at, _) in code.match_indices(root) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + root.len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group: split on commas at depth 0.
                let mut depth = 0;
                let mut item = String::new();
                for c in group.chars() {
                    match c {
                        '{' => depth += 1,
                        '}' if depth == 0 => break,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            found.push(first_segment(&item));
                            item.clear();
                            continue;
                        }
                        _ => {}
                    }
                    item.push(c);
                }
                found.push(first_segment(&item));
            } else {
                found.push(first_segment(rest));
            }
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.trim()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

#[test]
fn lower_modules_do_not_import_broker_server_or_handlers() {
    let mut files = Vec::new();
    sources(&src_dir(), None, &mut files);
    assert!(files.len() > 10, "found too few sources: {files:?}");
    let mut violations = Vec::new();
    for (module, path) in &files {
        assert!(
            LOWER.contains(&module.as_str()) || UPPER.contains(&module.as_str()),
            "{}: module `{module}` is in neither layer; add it to LOWER or UPPER",
            path.display()
        );
        if !LOWER.contains(&module.as_str()) {
            continue;
        }
        let src = std::fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let top_level = path.parent() == Some(src_dir().as_path());
        for named in crate_modules(&src, top_level) {
            if FORBIDDEN.contains(&named.as_str()) {
                violations.push(format!("{}: names crate::{named}", path.display()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "lower modules reach up:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_import_scanner_sees_paths_and_skips_comments_and_strings() {
    let src = r##"
        //! See [`crate::broker::Shared`].
        use crate::error::KafkaCode;
        use crate::{log::Command, broker::Shared};
        use crate :: server;
        /* crate::handlers in a comment */
        fn f() -> &'static str {
            let _c = '"';
            let _ = super::handlers::supports;
            let _ = crate::groups::Coordinator::new;
            r#"crate::handlers in a raw string"#;
            "crate::handlers in a string"
        }
    "##;
    assert_eq!(
        crate_modules(src, true),
        ["error", "log", "broker", "server", "groups", "handlers"]
    );
    assert_eq!(
        crate_modules(src, false),
        ["error", "log", "broker", "server", "groups"]
    );
}
