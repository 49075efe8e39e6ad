//! The parts table of `src/lib.rs` holds: no module imports a part its row does not name.
//! The table is read from `src/lib.rs` itself, so it is stated in one place.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A part's modules and the parts it may use (`None`: every part).
struct Part {
    modules: Vec<String>,
    may_use: Option<BTreeSet<String>>,
}

fn parts_table(lib: &str) -> BTreeMap<String, Part> {
    let mut parts = BTreeMap::new();
    for line in lib.lines() {
        let Some(row) = line.strip_prefix("//! | ") else {
            continue;
        };
        let cells: Vec<&str> = row
            .trim_end_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        if cells.len() != 4 || cells[0] == "part" || cells[0].starts_with("---") {
            continue;
        }
        let modules = cells[1]
            .split(',')
            .map(|m| m.trim().trim_matches('`').to_owned())
            .collect();
        let may_use = match cells[3] {
            "every part" => None,
            "—" => Some(BTreeSet::new()),
            list => Some(list.split(',').map(|p| p.trim().to_owned()).collect()),
        };
        parts.insert(cells[0].to_owned(), Part { modules, may_use });
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate's top-level modules a line of code names (`crate::db::…`, `stowage::web::…`).
fn named_modules(line: &str, out: &mut BTreeSet<String>) {
    let code = line.split("//").next().unwrap_or("");
    for prefix in ["crate::", "stowage::"] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = code[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
}

#[test]
fn no_module_imports_a_part_its_row_of_the_parts_table_does_not_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(root.join("lib.rs")).unwrap();
    let parts = parts_table(&lib);
    assert!(
        parts.len() >= 10,
        "the parts table of src/lib.rs was not found"
    );
    let part_of: BTreeMap<&str, &str> = parts
        .iter()
        .flat_map(|(name, part)| {
            part.modules
                .iter()
                .map(move |m| (m.as_str(), name.as_str()))
        })
        .collect();

    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let relative = file.strip_prefix(&root).unwrap();
        let top = relative
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_owned();
        if top == "lib" {
            continue;
        }
        let Some(&part) = part_of.get(top.as_str()) else {
            violations.push(format!(
                "{}: module `{top}` is in no part",
                relative.display()
            ));
            continue;
        };
        let Some(allowed) = &parts[part].may_use else {
            continue;
        };
        let mut named = BTreeSet::new();
        for line in std::fs::read_to_string(&file).unwrap().lines() {
            named_modules(line, &mut named);
        }
        for module in named {
            let Some(&used) = part_of.get(module.as_str()) else {
                continue;
            };
            if used != part && !allowed.contains(used) {
                violations.push(format!(
                    "{}: {part} uses {used} (`{module}`), which its row does not name",
                    relative.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn the_check_sees_a_part_used_against_the_table() {
    let parts = parts_table(
        "//! | part | modules | holds | may use |\n//! |---|---|---|---|\n\
         //! | Data | `db` | tables | Config |\n//! | Config | `config` | vars | — |",
    );
    assert_eq!(parts["Data"].modules, ["db"]);
    assert!(parts["Config"].may_use.as_ref().unwrap().is_empty());
    let mut named = BTreeSet::new();
    named_modules(
        "use crate::web::AppError; // crate::jobs in a comment",
        &mut named,
    );
    named_modules("let x = my_crate::storage::thing;", &mut named);
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["web"]);
}
