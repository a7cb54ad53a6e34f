//! Document operators: json_contains (a sub-document's fields, depth-limited),
//! json_has_key / json_path_exists / json_has_any / json_has_all (`$exists` on sub-paths),
//! and size (`$size` of an array).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

use super::ops::Op;
use super::support::*;
use super::Leaf;
use crate::keys::{key_problem, MAX_DEPTH};

fn json_contains<'py>(
    py: Python<'py>,
    field: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<Bound<'py, PyDict>>,
) -> PyResult<()> {
    if depth > MAX_DEPTH {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator 'json_contains' value nests deeper than {MAX_DEPTH} levels (MongoDB's limit) at '{field}'"
            ),
        ));
    }
    let d = match val.downcast::<PyDict>() {
        Ok(d) if !d.is_empty() => d,
        _ => {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' expects a non-empty dict, got {}", repr(val)),
            ))
        }
    };
    for (key, item) in d.iter() {
        let Ok(k) = key.downcast::<PyString>() else {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' expects string keys, got {}", repr(&key)),
            ));
        };
        let k = k.to_str()?;
        let problem = if k.is_empty() { Some("empty segment") } else { key_problem(k) };
        if let Some(p) = problem {
            return Err(spec_error(py, path, format!("invalid key {} in 'json_contains': {p}", repr(&key))));
        }
        let sub = dotted(field, k);
        if item.is_instance_of::<PyDict>() {
            json_contains(py, &sub, &item, path, depth + 1, out)?;
        } else if let Some(items) = as_items(&item) {
            for element in &items {
                if element.is_instance_of::<PyDict>()
                    || element.is_instance_of::<PyList>()
                    || element.is_instance_of::<PyTuple>()
                {
                    return Err(spec_error(
                        py,
                        path,
                        "operator 'json_contains' supports lists of scalars only".to_owned(),
                    ));
                }
            }
            no_regex_elements(py, "json_contains", &items, path)?;
            out.push(field_cond(py, &sub, intern!(py, "$all"), PyList::new(py, items)?)?);
        } else {
            no_regex_elements(py, "json_contains", std::slice::from_ref(&item), path)?;
            out.push(field_cond(py, &sub, intern!(py, "$eq"), item)?);
        }
    }
    Ok(())
}

fn key_list<'py>(py: Python<'py>, op: &str, val: &Bound<'py, PyAny>, path: &Path<'_>) -> PyResult<Vec<String>> {
    let keys = need_list(py, op, val, path)?;
    if keys.is_empty() {
        return Err(spec_error(py, path, format!("operator '{op}' needs at least one key")));
    }
    let mut out = Vec::with_capacity(keys.len());
    for key in &keys {
        if let Some(problem) = field_path_problem(py, key)? {
            return Err(spec_error(py, path, format!("operator '{op}': {problem}")));
        }
        out.push(key.downcast::<PyString>()?.to_str()?.to_owned());
    }
    Ok(out)
}

fn exists_cond<'py>(py: Python<'py>, field: &str, key: &str) -> PyResult<Bound<'py, PyDict>> {
    field_cond(py, dotted(field, key), intern!(py, "$exists"), true)
}

fn has_key<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let key_obj = need_str(py, leaf.name, &leaf.val, leaf.path)?;
    let mut key = key_obj.to_str()?;
    if op == Op::JsonPathExists {
        if let Some(rest) = key.strip_prefix("$.") {
            key = rest;
        }
    }
    if let Some(problem) = str_path_problem(py, key) {
        return Err(spec_error(py, leaf.path, format!("operator '{}': {problem}", leaf.name)));
    }
    exists_cond(py, leaf.field, key)
}

fn has_keys<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let keys = key_list(py, leaf.name, &leaf.val, leaf.path)?;
    let mut parts = Vec::with_capacity(keys.len());
    for key in &keys {
        parts.push(exists_cond(py, leaf.field, key)?);
    }
    let group = if op == Op::JsonHasAny { intern!(py, "$or") } else { intern!(py, "$and") };
    one_or_group(py, group, parts)
}

fn size<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let val = &leaf.val;
    let ok = !val.is_instance_of::<PyBool>() && val.is_instance_of::<PyInt>() && !val.lt(0)?;
    if !ok {
        return Err(spec_error(py, leaf.path, format!("operator 'size' expects an integer >= 0, got {}", repr(val))));
    }
    field_cond(py, leaf.key, intern!(py, "$size"), val)
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    match op {
        Op::JsonContains => {
            let mut parts = Vec::new();
            json_contains(py, leaf.field, &leaf.val, leaf.path, 1, &mut parts)?;
            one_or_group(py, intern!(py, "$and"), parts)
        }
        Op::JsonHasKey | Op::JsonPathExists => has_key(py, leaf, op),
        Op::JsonHasAny | Op::JsonHasAll => has_keys(py, leaf, op),
        _ => size(py, leaf),
    }
}
