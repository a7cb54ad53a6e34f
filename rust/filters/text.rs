//! Full-text operators: fts (words, `-` and quotes removed) and fts_phrase (one quoted
//! phrase), both `$text` searches allowed only at the top level, as MongoDB requires.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::ops::Op;
use super::support::*;
use super::Leaf;

fn words(text: &str) -> Vec<&str> {
    text.split(|c| WHITESPACE.contains(&c)).filter(|w| !w.is_empty()).collect()
}

/// The `$search` text of `text`, or "" when it has no word.
fn search_text(text: &str, op: Op) -> String {
    if op == Op::Fts {
        let ws: Vec<String> = words(text)
            .into_iter()
            .map(|w| w.replace('"', "").trim_start_matches('-').to_owned())
            .filter(|w| !w.is_empty())
            .collect();
        return ws.join(" ");
    }
    let cleaned = text.replace('"', "");
    let ws = words(&cleaned);
    if ws.is_empty() {
        String::new()
    } else {
        format!("\"{}\"", ws.join(" "))
    }
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    if !leaf.top {
        return Err(nested_only_top(py, leaf.name, leaf.path));
    }
    let search = search_text(need_str(py, leaf.name, &leaf.val, leaf.path)?.to_str()?, op);
    if search.is_empty() {
        return Err(spec_error(
            py,
            leaf.path,
            format!("operator '{}' needs at least one word to search for", leaf.name),
        ));
    }
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$search"), search)?;
    let out = PyDict::new(py);
    out.set_item(intern!(py, "$text"), inner)?;
    Ok(out)
}
