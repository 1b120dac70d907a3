//! The files of the API crate stack in floors, and none imports from a floor above its own
//! (see docs/architecture.md). A new file must be given its floor here.

use std::path::Path;

/// Each source file and its floor.
const FLOORS: &[(&str, u8)] = &[
    ("problem", 0),
    ("request_context", 0),
    ("metrics", 0),
    ("wire", 0),
    ("cursor", 0),
    ("settings", 0),
    ("telemetry", 0),
    ("auth", 1),
    ("body", 1),
    ("connection", 1),
    ("rate_limit", 1),
    ("debugger", 0),
    ("routes::debugger", 3),
    ("schemas", 1),
    ("routes::schemas", 3),
    ("state", 2),
    ("routes", 3),
    ("routes::events", 3),
    ("routes::ops", 3),
    ("openapi", 4),
    ("startup", 4),
    ("cli", 4),
    ("relay", 4),
];

fn floor(module: &str) -> Option<u8> {
    FLOORS.iter().find(|(name, _)| *name == module).map(|(_, floor)| *floor)
}

/// The module a `crate::…` path names: the longest prefix that is a known module.
fn module_of(path: &str) -> Option<&'static str> {
    FLOORS
        .iter()
        .map(|(name, _)| *name)
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
    let mut violations = Vec::new();
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
        let own = floor(&module).unwrap_or_else(|| {
            panic!("src/{} has no floor: add it to FLOORS (tests/layers.rs)", relative.display())
        });
        let text = std::fs::read_to_string(&file).expect("read file");
        for path in crate_paths(&text) {
            let Some(target) = module_of(&path) else { continue };
            let target_floor = floor(target).unwrap_or(0);
            if target != module && target_floor > own {
                violations
                    .push(format!("{module} (floor {own}) imports {path} (floor {target_floor})"));
            }
        }
    }
    assert!(violations.is_empty(), "imports from a floor above:\n{}", violations.join("\n"));
}

#[test]
fn the_check_reads_grouped_and_nested_imports() {
    let text = "use crate::auth::{Caller, EventsWrite};\nuse crate::{body, state::AppState};\n// crate::startup\nlet x = crate::openapi::document();";
    assert_eq!(crate_paths(text), ["auth", "body", "state::AppState", "openapi::document"]);
}
