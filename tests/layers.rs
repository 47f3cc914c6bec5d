//! The architecture, kept true: dependencies between the layers of `src/` point down only,
//! no two files import each other in a circle, no file or function grows past what a reader
//! takes in at once, and no test hook reaches a build without the `test-hooks` feature.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each layer and the layers it may use. Everything may use `model`; nothing below `app` may
/// use `app`, `config` or `cli`.
const ALLOWED: &[(&str, &[&str])] = &[
    ("model", &[]),
    ("sys", &["model"]),
    ("pg", &["sys", "model"]),
    ("engine", &["pg", "sys", "model"]),
    ("measure", &["engine", "pg", "sys", "model"]),
    ("judge", &["measure", "engine", "pg", "sys", "model"]),
    ("output", &["judge", "sys", "model"]),
    ("logs", &["output", "judge", "sys", "model"]),
    ("report", &["logs", "output", "judge", "sys", "model"]),
    (
        "fleet",
        &["judge", "measure", "engine", "pg", "sys", "model"],
    ),
    (
        "config",
        &[
            "cli", "fleet", "judge", "measure", "engine", "pg", "sys", "model",
        ],
    ),
    // The command line types its values where it reads them, with the types (and parsers)
    // of the layers that own them: a gate, an sslmode, a CPU list.
    ("cli", &["judge", "pg", "sys", "model"]),
];

const MAX_FILE_LINES: usize = 500;
const MAX_FUNCTION_LINES: usize = 80;

fn source_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    files.sort();
    files
}

/// The path of a file relative to `src/`, as `pg/request/kept.rs`.
fn relative(path: &Path) -> String {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    path.strip_prefix(&src)
        .expect("a file under src/")
        .to_string_lossy()
        .into_owned()
}

/// The layer of a file: its first folder, or its own name for a file at the top.
fn layer(relative: &str) -> &str {
    let first = relative.split('/').next().unwrap_or(relative);
    first.strip_suffix(".rs").unwrap_or(first)
}

/// Whether a file holds only unit tests (tests may reach anywhere they need).
fn is_test_file(relative: &str) -> bool {
    let name = relative.rsplit('/').next().unwrap_or(relative);
    name == "tests.rs" || name.ends_with("_tests.rs") || name == "test_support.rs"
}

/// The code of a file without its unit tests (tests may reach anywhere they need).
fn code(text: &str) -> &str {
    match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => text,
    }
}

/// Every `crate::a::b` path a file names, as its segments.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    for (at, _) in text.match_indices("crate::") {
        let preceded_by_word = text[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        if preceded_by_word {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        let segments: Vec<String> = rest
            .split("::")
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|s| !s.is_empty())
            .collect();
        if !segments.is_empty() {
            paths.push(segments);
        }
    }
    paths
}

/// The file of `src/` that a `crate::` path points into: the longest prefix that is a file.
fn target_file(segments: &[String], files: &BTreeSet<String>) -> Option<String> {
    (1..=segments.len()).rev().find_map(|n| {
        let stem = segments[..n].join("/");
        [format!("{stem}.rs"), format!("{stem}/mod.rs")]
            .into_iter()
            .find(|candidate| files.contains(candidate))
    })
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let files: Vec<PathBuf> = source_files();
    let names: BTreeSet<String> = files.iter().map(|f| relative(f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let text = fs::read_to_string(file).expect("a readable source file");
        let from = relative(file);
        if is_test_file(&from) {
            continue;
        }
        let targets: BTreeSet<String> = crate_paths(code(&text))
            .iter()
            .filter_map(|segments| target_file(segments, &names))
            .filter(|target| *target != from)
            .collect();
        graph.insert(from, targets);
    }
    graph
}

#[test]
fn every_layer_uses_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (from, targets) in imports() {
        let Some(below) = allowed.get(layer(&from)) else {
            continue; // app, lib.rs, main.rs and test support sit on top
        };
        for target in targets {
            let to = layer(&target);
            if to != layer(&from) && !below.contains(&to) {
                wrong.push(format!("{from} uses {target}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_in_a_circle() {
    let graph = imports();
    // A depth-first search that reports the first back edge it meets, as the circle it closes.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let circle = visit(node, &graph, &mut Vec::new(), &mut done);
        assert_eq!(circle, None, "files that import each other in a circle");
    }
}

#[test]
fn no_file_is_over_five_hundred_lines() {
    let long: Vec<String> = source_files()
        .iter()
        .map(|f| (relative(f), fs::read_to_string(f).unwrap().lines().count()))
        .filter(|(_, lines)| *lines > MAX_FILE_LINES)
        .map(|(file, lines)| format!("{file}: {lines} lines"))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines: {long:?}"
    );
}

/// Functions measured from their `fn` line to the closing brace at the same indentation.
fn long_functions(file: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut long = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "pub(crate) fn ",
            "const fn ",
            "pub const fn ",
        ]
        .iter()
        .any(|prefix| trimmed.starts_with(prefix));
        if !is_fn || trimmed.ends_with(';') {
            continue;
        }
        let indent = line.len() - trimmed.len();
        let closing = " ".repeat(indent) + "}";
        if let Some(end) = lines[start..].iter().position(|l| *l == closing)
            && end + 1 > MAX_FUNCTION_LINES
        {
            let name: String = trimmed
                .split("fn ")
                .nth(1)
                .unwrap_or("")
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            long.push(format!("{file}:{} {name} ({} lines)", start + 1, end + 1));
        }
    }
    long
}

#[test]
fn no_function_is_over_eighty_lines() {
    let long: Vec<String> = source_files()
        .iter()
        .flat_map(|f| long_functions(&relative(f), &fs::read_to_string(f).unwrap()))
        .collect();
    assert!(
        long.is_empty(),
        "functions over {MAX_FUNCTION_LINES} lines: {long:?}"
    );
}

/// The lines naming a test hook's variable (`"PGSTRESS_TEST_…"`) with no
/// `#[cfg(feature = "test-hooks")]` among the attributes and doc comments right above them.
/// The hooks' readers use those constants, so the compiler keeps them gated too: a release
/// build (no dev-dependencies, so no feature) has neither the names nor the reads.
fn ungated_hooks(file: &str, text: &str) -> Vec<String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut ungated = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        if !line.contains("\"PGSTRESS_TEST_") {
            continue;
        }
        let gated = lines[..at]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("//"))
            .any(|l| l == "#[cfg(feature = \"test-hooks\")]");
        if !gated {
            ungated.push(format!("{file}:{}", at + 1));
        }
    }
    ungated
}

#[test]
fn every_test_hook_is_behind_the_test_hooks_feature() {
    let ungated: Vec<String> = source_files()
        .iter()
        .flat_map(|f| ungated_hooks(&relative(f), &fs::read_to_string(f).unwrap()))
        .collect();
    assert!(ungated.is_empty(), "test hooks in every build: {ungated:?}");
}

#[test]
fn the_checks_see_a_circle_a_long_function_and_an_ungated_hook() {
    let files: BTreeSet<String> = ["a.rs", "b/mod.rs", "b/c.rs"]
        .map(String::from)
        .into_iter()
        .collect();
    let paths = crate_paths("use crate::b::c::Thing; let x = crate::a::f(); foo::crate::x");
    let targets: Vec<Option<String>> = paths.iter().map(|p| target_file(p, &files)).collect();
    assert_eq!(
        targets,
        vec![Some("b/c.rs".to_string()), Some("a.rs".to_string())]
    );
    let body = format!("fn long() {{\n{}}}\n", "    let _ = 1;\n".repeat(85));
    assert_eq!(long_functions("x.rs", &body).len(), 1);
    assert!(long_functions("x.rs", "fn short() {\n}\n").is_empty());
    let hook = "/// Why.\npub const X: &str = \"PGSTRESS_TEST_X\";\n";
    assert_eq!(ungated_hooks("x.rs", hook), vec!["x.rs:2".to_string()]);
    let gated = format!("#[cfg(feature = \"test-hooks\")]\n{hook}");
    assert!(ungated_hooks("x.rs", &gated).is_empty());
}
