//! The files of the API crate stack in floors, and none imports from a floor above its own.
//! The floors are the table of docs/architecture.md: a new file must be given its floor there.

use std::path::Path;

/// Each source file (as a module path) and its floor, read from the table of
/// docs/architecture.md, so that the document cannot drift from the code.
fn floors() -> Vec<(String, u8)> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/architecture.md");
    let text = std::fs::read_to_string(&doc).expect("docs/architecture.md");
    let section = text
        .split("## Floors inside `intake-api`")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("docs/architecture.md has a section \"Floors inside `intake-api`\"");
    let mut floors = Vec::new();
    for row in section.lines().filter(|l| l.starts_with("| ")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let Ok(floor) = cells[1].parse::<u8>() else { continue };
        for file in cells[2].split(',') {
            let file = file.trim().trim_matches('`').trim_end_matches(".rs");
            let module = file.trim_end_matches("/mod").replace('/', "::");
            floors.push((module, floor));
        }
    }
    assert!(floors.len() > 10, "the floor table of docs/architecture.md was not found");
    floors
}

fn floor(floors: &[(String, u8)], module: &str) -> Option<u8> {
    floors.iter().find(|(name, _)| name == module).map(|(_, floor)| *floor)
}

/// The module a `crate::…` path names: the longest prefix that is a known module.
fn module_of<'a>(floors: &'a [(String, u8)], path: &str) -> Option<&'a str> {
    floors
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| path == *name || path.starts_with(&format!("{name}::")))
        .max_by_key(|name| name.len())
}

/// Every `crate::` path a source text names, in `use crate::{a, b::c}` lists too.
fn crate_paths(text: &str) -> Vec<String> {
    let code: String =
        text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n");
    let mut paths = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(list) = rest.strip_prefix('{') {
            let list = &list[..list.find('}').unwrap_or(list.len())];
            paths.extend(list.split(',').map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()));
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'));
            paths.push(rest[..end.unwrap_or(rest.len())].trim_end_matches(':').to_owned());
        }
    }
    paths
}

#[test]
fn no_file_imports_from_a_floor_above_its_own() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = vec![];
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let floors = floors();
    let mut violations = Vec::new();
    let mut seen = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&src).expect("under src").with_extension("");
        let mut parts: Vec<String> =
            relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        let module = parts.join("::");
        if module == "lib" || module == "main" {
            continue;
        }
        let own = floor(&floors, &module).unwrap_or_else(|| {
            panic!(
                "src/{} has no floor: add it to the table of docs/architecture.md",
                relative.display()
            )
        });
        seen.push(module.clone());
        let text = std::fs::read_to_string(&file).expect("read file");
        for path in crate_paths(&text) {
            let Some(target) = module_of(&floors, &path) else { continue };
            let target_floor = floor(&floors, target).unwrap_or(0);
            if target != module && target_floor > own {
                violations
                    .push(format!("{module} (floor {own}) imports {path} (floor {target_floor})"));
            }
        }
    }
    assert!(violations.is_empty(), "imports from a floor above:\n{}", violations.join("\n"));
    let stale: Vec<&str> =
        floors.iter().map(|(m, _)| m.as_str()).filter(|m| !seen.iter().any(|s| s == m)).collect();
    assert!(stale.is_empty(), "docs/architecture.md names files that do not exist: {stale:?}");
}

#[test]
fn the_check_reads_grouped_and_nested_imports() {
    let text = "use crate::auth::{Caller, EventsWrite};\nuse crate::{body, state::AppState};\n// crate::startup\nlet x = crate::openapi::document();";
    assert_eq!(crate_paths(text), ["auth", "body", "state::AppState", "openapi::document"]);
}
