//! The house rules ARCHITECTURE.md states, checked on the source tree (in the manner of
//! rust-analyzer's tidy test): a rule that only a document states drifts; one a test checks
//! holds. Each test names the rule, its reason, and every place that breaks it.

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir` (relative to the repository root), sorted.
fn rust_files(dir: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if path.is_dir() {
                walk(&path, out);
            } else if name.ends_with(".rs") {
                out.push(path);
            }
        }
    }
    let mut out = vec![];
    walk(&root().join(dir), &mut out);
    out.sort();
    out
}

fn relative(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines of `path` that are code (not `//` comments), with their 1-based numbers.
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

fn assert_none(rule: &str, violations: Vec<String>) {
    assert!(
        violations.is_empty(),
        "{rule}\n  {}",
        violations.join("\n  ")
    );
}

/// The dependency names of a Cargo.toml (every `[*dependencies]` table).
fn dependencies(manifest: &str) -> Vec<String> {
    let text = fs::read_to_string(root().join(manifest)).unwrap();
    let mut in_deps = false;
    let mut out = vec![];
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line
                .trim_matches(|c| c == '[' || c == ']')
                .ends_with("dependencies");
        } else if in_deps && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().trim_end_matches(".workspace").to_string());
        }
    }
    out
}

#[test]
fn sql_never_touches_files() {
    // The catalog and storage own every file in the data directory; a file sql wrote would be
    // one no recovery, lock or lost+found rule knows about.
    let mut bad = vec![];
    for file in rust_files("sql/src") {
        for (n, line) in code_lines(&file) {
            if line.contains("std::fs") || line.contains("tokio::fs") || line.contains("File::") {
                bad.push(format!("{}:{n}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert_none("sql/src must not touch files (use eddy_storage)", bad);
}

#[test]
fn storage_knows_no_sql() {
    // Storage stores batches at offsets; a SQL dependency there would let SQL semantics leak
    // into the log and make every DataFusion upgrade a storage change.
    let mut bad: Vec<String> = dependencies("storage/Cargo.toml")
        .into_iter()
        .filter(|d| d.contains("datafusion") || d.contains("sqlparser") || d == "eddy-sql")
        .map(|d| format!("storage/Cargo.toml: depends on {d}"))
        .collect();
    for file in rust_files("storage/src") {
        for (n, line) in code_lines(&file) {
            if line.contains("datafusion") || line.contains("sqlparser") {
                bad.push(format!("{}:{n}: {}", relative(&file), line.trim()));
            }
        }
    }
    assert_none("storage must not depend on SQL crates", bad);
}

#[test]
fn only_the_server_speaks_pgwire() {
    // The wire protocol is one layer; sql returns Outputs and errors, the server encodes them.
    let mut bad = vec![];
    for krate in ["sql", "catalog", "storage", "raft"] {
        if dependencies(&format!("{krate}/Cargo.toml"))
            .iter()
            .any(|d| d == "pgwire")
        {
            bad.push(format!("{krate}/Cargo.toml depends on pgwire"));
        }
        for file in rust_files(&format!("{krate}/src")) {
            for (n, line) in code_lines(&file) {
                if line.contains("pgwire") {
                    bad.push(format!("{}:{n}: {}", relative(&file), line.trim()));
                }
            }
        }
    }
    assert_none("pgwire belongs to the server crate only", bad);
}

/// Whether `line` holds a string literal that looks like a SQLSTATE: five characters of
/// `[0-9A-Z]`, at least one a digit.
fn sqlstate_literal(line: &str) -> Option<&str> {
    let bytes = line.as_bytes();
    (0..bytes.len().saturating_sub(6)).find_map(|i| {
        let window = &bytes[i..i + 7];
        let body = &window[1..6];
        (window[0] == b'"'
            && window[6] == b'"'
            && body
                .iter()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && body.iter().any(u8::is_ascii_digit))
        .then(|| &line[i..i + 7])
    })
}

#[test]
fn sqlstates_are_chosen_in_one_place() {
    // One mapping from errors to SQLSTATEs (server/pg/errors.rs): a code chosen anywhere else
    // is a code the errors.slt cases and the README's list do not know about.
    let mut bad = vec![];
    let mut files = rust_files("server");
    for krate in ["sql/src", "catalog/src", "storage/src", "raft/src"] {
        files.extend(rust_files(krate));
    }
    for file in files {
        let name = relative(&file);
        if name == "server/pg/errors.rs" {
            continue;
        }
        for (n, line) in code_lines(&file) {
            if line.contains("ErrorInfo::new") || line.contains("ErrorInfo {") {
                bad.push(format!("{name}:{n}: builds an ErrorInfo: {}", line.trim()));
            } else if let Some(code) = sqlstate_literal(&line) {
                bad.push(format!("{name}:{n}: SQLSTATE-like literal {code}"));
            }
        }
    }
    assert_none("SQLSTATEs and ErrorInfo belong in server/pg/errors.rs", bad);
}

#[test]
fn every_rust_file_says_what_it_owns() {
    // A module doc is where a file says what it owns and must never do; `cargo doc` shows
    // it, and a reader new to the code starts there.
    let mut bad = vec![];
    for dir in [
        "server", "sql", "catalog", "storage", "raft", "tests", "examples",
    ] {
        for file in rust_files(dir) {
            let text = fs::read_to_string(&file).unwrap();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
            if !first.starts_with("//!") {
                bad.push(relative(&file));
            }
        }
    }
    assert_none("every .rs file starts with a //! module doc", bad);
}

#[test]
fn the_checks_themselves_catch_what_they_look_for() {
    assert_eq!(
        sqlstate_literal(r#"state("42P01".into())"#),
        Some("\"42P01\"")
    );
    assert_eq!(sqlstate_literal(r#"tag: "RESET".into()"#), None);
    assert_eq!(sqlstate_literal(r#""XX000""#), Some("\"XX000\""));
    assert!(
        dependencies("storage/Cargo.toml").contains(&"arrow".to_string()),
        "the manifest parser reads dependency names"
    );
}

/// The layers of the sql crate, top first. A module may use its own layer's files and any
/// layer below; modules that share a layer (`push` and `continuous`, `functions` and
/// `rewrite`) do not use each other. The same order is written in `sql/src/lib.rs`.
const SQL_LAYERS: &[&[&str]] = &[
    &["handlers"],
    &["push", "continuous"],
    &["exec"],
    &["session"],
    &["functions", "rewrite"],
    &["provider"],
    &["ingest"],
    &["engine"],
    &["parser"],
    &["error"],
];

/// What the crate root re-exports, by the module that defines it.
const SQL_REEXPORTS: &[(&str, &str)] = &[
    ("Engine", "engine"),
    ("EngineConfig", "engine"),
    ("Offline", "engine"),
    ("Session", "session"),
    ("Description", "session"),
    ("Output", "session"),
    ("CopyIn", "ingest"),
    ("Error", "error"),
    ("Result", "error"),
    ("SERVER_VERSION", "functions"),
];

/// The top-level modules a sql source file names through `crate::`.
fn crate_modules_used(path: &Path) -> Vec<String> {
    let code: String = code_lines(path)
        .into_iter()
        .map(|(_, l)| l + "\n")
        .collect();
    let mut names = vec![];
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c, d::{e, f}}`: the first segment of each top-level entry.
            let (mut depth, mut entry) = (0, String::new());
            for ch in group.chars() {
                match ch {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => names.push(std::mem::take(&mut entry)),
                    c if depth == 0 => entry.push(c),
                    _ => {}
                }
            }
            names.push(entry);
        } else {
            names.push(
                rest.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect(),
            );
        }
    }
    let mut modules: Vec<String> = names
        .iter()
        .map(|n| n.trim().split("::").next().unwrap_or("").trim().to_string())
        .filter(|n| !n.is_empty() && n != "self")
        .map(|n| {
            SQL_REEXPORTS
                .iter()
                .find(|(name, _)| *name == n)
                .map_or(n, |(_, module)| module.to_string())
        })
        .collect();
    modules.sort();
    modules.dedup();
    modules
}

#[test]
fn sql_modules_point_one_way() {
    // Replication and joins build on these seams: a cycle between modules means a change to
    // one kind of query reaches into another, and no layer can be read on its own.
    let layer_of = |m: &str| SQL_LAYERS.iter().position(|l| l.contains(&m));
    let mut bad = vec![];
    for file in rust_files("sql/src") {
        let name = relative(&file);
        let inner = name.trim_start_matches("sql/src/");
        let module = inner
            .split('/')
            .next()
            .unwrap_or("")
            .trim_end_matches(".rs");
        if module == "lib" {
            continue;
        }
        let Some(mine) = layer_of(module) else {
            bad.push(format!(
                "{name}: module `{module}` is in no layer of SQL_LAYERS"
            ));
            continue;
        };
        for used in crate_modules_used(&file) {
            if used == module {
                continue;
            }
            match layer_of(&used) {
                Some(theirs) if theirs > mine => {}
                Some(_) => bad.push(format!("{name}: `{module}` uses `{used}`, not below it")),
                None => bad.push(format!("{name}: uses `crate::{used}`, in no layer")),
            }
        }
    }
    assert_none("sql modules use only the layers below their own", bad);
}

#[test]
fn the_layer_check_reads_grouped_and_nested_uses() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("x.rs");
    fs::write(
        &file,
        "use crate::{Engine, exec::{a, b}, push};\n// crate::handlers in a comment\nfn f() { crate::session::x(); }\n",
    )
    .unwrap();
    assert_eq!(
        crate_modules_used(&file),
        ["engine", "exec", "push", "session"]
    );
}
