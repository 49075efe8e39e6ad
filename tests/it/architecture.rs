//! The parts table of `src/lib.rs` holds: no module imports a part its row does not name,
//! whether by a `crate::` path, a grouped `use crate::{…}`, enough `super::` to reach the
//! crate's root, or an expression in a template. The table is read from `src/lib.rs` itself,
//! so it is stated in one place.

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

/// Every file under `dir` whose name ends in `.{extension}`.
fn files_ending(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_ending(&path, extension, out);
        } else if path.extension().is_some_and(|e| e == extension) {
            out.push(path);
        }
    }
}

/// The first name of each path a `use` group holds (`{db::X, web::{Y, Z}}` → `db`, `web`),
/// from `group` starting just after its `{`.
fn group_heads(group: &str, out: &mut BTreeSet<String>) {
    let mut depth = 0;
    let mut entry_start = true;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => return,
            '}' => depth -= 1,
            ',' if depth == 0 => entry_start = true,
            c if entry_start && !c.is_whitespace() => {
                entry_start = false;
                let name: String = group[at..]
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
            _ => {}
        }
    }
}

/// The crate's top-level modules `code` names: `crate::db::…`, `stowage::web::…`, grouped
/// (`crate::{db, web}`), or by enough `super::` to reach the crate's root from a file
/// `depth` modules down (`src/db.rs` is 1, `src/db/users.rs` 2). Comments are left out.
fn named_modules(code: &str, depth: usize, out: &mut BTreeSet<String>) {
    let code: String = code
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let supers = "super::".repeat(depth);
    for prefix in ["crate::", "stowage::", supers.as_str()] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            if prefix == supers && rest.starts_with("super::") {
                continue;
            }
            if let Some(group) = rest.strip_prefix('{') {
                group_heads(group, out);
                continue;
            }
            let name: String = rest
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
    files_ending(&root, "rs", &mut files);
    // Templates are compiled into Web's `web::templates` (two modules down): what their
    // expressions name counts as Web's.
    let templates = root.join("../templates");
    let mut pages = Vec::new();
    files_ending(&templates, "html", &mut pages);
    assert!(!pages.is_empty(), "no templates found");
    let mut violations = Vec::new();
    let sources = files
        .iter()
        .map(|file| (file, file.strip_prefix(&root).unwrap().to_path_buf()))
        .chain(pages.iter().map(|page| {
            let relative = page.strip_prefix(&templates).unwrap();
            (page, Path::new("web/templates").join(relative))
        }));
    for (file, relative) in sources {
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
        let depth = relative.components().count();
        named_modules(&std::fs::read_to_string(file).unwrap(), depth, &mut named);
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
    let names = |code: &str, depth: usize| {
        let mut named = BTreeSet::new();
        named_modules(code, depth, &mut named);
        named.into_iter().collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            "use crate::web::AppError; // crate::jobs in a comment\n\
             let x = my_crate::storage::thing;",
            1
        ),
        ["web"]
    );
    // Grouped, over several lines, nested.
    assert_eq!(
        names(
            "use crate::{\n    db::Database,\n    media::{keys, checks},\n    web,\n};",
            1
        ),
        ["db", "media", "web"]
    );
    // Up to the root: from src/db/users.rs two `super::`, from src/db.rs one.
    assert_eq!(
        names("use super::super::web::AppError;\nuse super::Pool;", 2),
        ["web"]
    );
    assert_eq!(names("use super::{jobs, web::X};", 1), ["jobs", "web"]);
    assert!(names("use super::super::super::x;", 2).is_empty());
}

/// The README's parts table names the same parts, each allowed the same others, as the one in
/// `src/lib.rs` that the check above enforces (the README's cells may say more of what each
/// holds and where).
#[test]
fn the_readme_states_the_parts_table_of_src_lib_rs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let architecture = readme
        .split("\n## Architecture")
        .nth(1)
        .expect("an Architecture section");
    let as_doc: String = architecture
        .lines()
        .map(|line| format!("//! {line}\n"))
        .collect();
    let rules = |table: BTreeMap<String, Part>| -> Vec<(String, Option<BTreeSet<String>>)> {
        table
            .into_iter()
            .map(|(name, part)| (name, part.may_use))
            .collect()
    };
    let (stated, enforced) = (rules(parts_table(&as_doc)), rules(parts_table(&lib)));
    assert!(enforced.len() >= 10);
    assert_eq!(stated, enforced);
}
