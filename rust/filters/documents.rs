//! Document operators, with PostgreSQL jsonb meaning: json_contains (`@>`: a dict's keys
//! recursively, a list's elements each in some element of an array, scalars by equality;
//! depth-limited), json_has_key / json_has_any / json_has_all (`?` / `?|` / `?&`: keys of an
//! object or string elements of an array), json_path_exists (`$exists` on a sub-path) and
//! size (`$size` of an array).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyInt, PyList, PyString, PyTuple};

use super::ops::Op;
use super::support::*;
use super::Leaf;
use crate::keys::{key_problem, MAX_DEPTH};

/// The text of a key of a `json_contains` dict, checked like a field name.
fn contains_key(py: Python<'_>, key: &Bound<'_, PyAny>, path: &Path<'_>) -> PyResult<String> {
    let Ok(k) = key.downcast::<PyString>() else {
        return Err(spec_error(py, path, format!("operator 'json_contains' expects string keys, got {}", repr(key))));
    };
    let k = k.to_str()?;
    let problem = if k.is_empty() { Some("empty segment") } else { key_problem(k) };
    if let Some(p) = problem {
        return Err(spec_error(py, path, format!("invalid key {} in 'json_contains': {p}", repr(key))));
    }
    Ok(k.to_owned())
}

/// Conditions (pushed on `out`) that the value at `prefix` contains `val`; `shown` names the
/// place in the value for messages. `depth` counts dict levels (lists cannot nest directly,
/// so every second call at most adds one).
fn contains<'py>(
    py: Python<'py>,
    prefix: &str,
    val: &Bound<'py, PyAny>,
    shown: &str,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<Bound<'py, PyDict>>,
) -> PyResult<()> {
    if let Ok(d) = val.downcast::<PyDict>() {
        if depth > MAX_DEPTH {
            return Err(spec_error(
                py,
                path,
                format!(
                    "operator 'json_contains' value nests deeper than {MAX_DEPTH} levels (MongoDB's limit) at '{shown}'"
                ),
            ));
        }
        if d.is_empty() {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' expects a non-empty dict, got {}", repr(val)),
            ));
        }
        for (key, item) in d.iter() {
            let text = contains_key(py, &key, path)?;
            let sub = if prefix.is_empty() { text.clone() } else { dotted(prefix, &text) };
            contains(py, &sub, &item, &dotted(shown, &text), path, depth + 1, out)?;
        }
    } else if let Some(items) = as_items(val) {
        contains_list(py, prefix, items, shown, path, depth, out)?;
    } else {
        no_regex_elements(py, "json_contains", std::slice::from_ref(val), path)?;
        out.push(field_cond(py, prefix, intern!(py, "$eq"), val)?);
    }
    Ok(())
}

/// A list, as one condition: the field is an array holding every scalar and, for each dict,
/// an element containing it (`$all` of `$elemMatch`es when there is more than one test).
fn contains_list<'py>(
    py: Python<'py>,
    prefix: &str,
    items: Vec<Bound<'py, PyAny>>,
    shown: &str,
    path: &Path<'_>,
    depth: usize,
    out: &mut Vec<Bound<'py, PyDict>>,
) -> PyResult<()> {
    let mut scalars = Vec::with_capacity(items.len());
    let mut documents = Vec::new();
    for item in items {
        if item.is_instance_of::<PyDict>() {
            documents.push(item);
        } else if item.is_instance_of::<PyList>() || item.is_instance_of::<PyTuple>() {
            return Err(spec_error(
                py,
                path,
                format!("operator 'json_contains' does not support arrays nested in arrays (at '{shown}')"),
            ));
        } else {
            scalars.push(item);
        }
    }
    no_regex_elements(py, "json_contains", &scalars, path)?;
    if documents.is_empty() {
        let cond = PyDict::new(py);
        cond.set_item(intern!(py, "$type"), intern!(py, "array"))?;
        if !scalars.is_empty() {
            cond.set_item(intern!(py, "$all"), PyList::new(py, scalars)?)?;
        }
        out.push(field_cond_dict(py, prefix, cond)?);
        return Ok(());
    }
    let mut matches = Vec::with_capacity(scalars.len() + documents.len());
    for scalar in scalars {
        let eq = PyDict::new(py);
        eq.set_item(intern!(py, "$eq"), scalar)?;
        matches.push(elem_match(py, eq)?);
    }
    for (index, document) in documents.iter().enumerate() {
        let query = element_query(py, document, &format!("{shown}[{index}]"), path, depth)?;
        matches.push(elem_match(py, query)?);
    }
    if matches.len() == 1 {
        if let Some(only) = matches.pop() {
            out.push(field_cond_dict(py, prefix, only)?);
            return Ok(());
        }
    }
    out.push(field_cond(py, prefix, intern!(py, "$all"), PyList::new(py, matches)?)?);
    Ok(())
}

fn elem_match<'py>(py: Python<'py>, query: Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "$elemMatch"), query)?;
    Ok(d)
}

fn field_cond_dict<'py>(py: Python<'py>, field: &str, cond: Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    let outer = PyDict::new(py);
    outer.set_item(PyString::new(py, field), cond)?;
    Ok(outer)
}

/// The `$elemMatch` query of an array element containing `document`: one document of field
/// tests (an `$and` there is not accepted by every server). Keys are single segments, so no
/// path is tested twice.
fn element_query<'py>(
    py: Python<'py>,
    document: &Bound<'py, PyAny>,
    shown: &str,
    path: &Path<'_>,
    depth: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let mut conditions = Vec::new();
    contains(py, "", document, shown, path, depth, &mut conditions)?;
    let query = PyDict::new(py);
    for condition in conditions {
        for (key, test) in condition.iter() {
            query.set_item(key, test)?;
        }
    }
    Ok(query)
}

fn key_list<'py>(py: Python<'py>, op: &str, val: &Bound<'py, PyAny>, path: &Path<'_>) -> PyResult<Vec<String>> {
    let keys = as_items(val).unwrap_or_else(|| vec![val.clone()]);
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

fn exists<'py>(py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(intern!(py, "$exists"), true)?;
    Ok(d)
}

/// jsonb `?|` (`any_key`) / `?&`: the keys exist in the object at `field` (not in the
/// documents of an array there), or are string elements of the array at `field` (or the
/// string itself).
fn has_keys<'py>(py: Python<'py>, field: &str, keys: &[String], any_key: bool) -> PyResult<Bound<'py, PyDict>> {
    let not_array = PyDict::new(py);
    not_array.set_item(intern!(py, "$not"), {
        let t = PyDict::new(py);
        t.set_item(intern!(py, "$type"), intern!(py, "array"))?;
        t
    })?;
    let mut parts = Vec::with_capacity(keys.len() + 1);
    if any_key {
        for key in keys {
            let d = PyDict::new(py);
            d.set_item(dotted(field, key), exists(py)?)?;
            d.set_item(field, &not_array)?;
            parts.push(d);
        }
    } else {
        let d = PyDict::new(py);
        for key in keys {
            d.set_item(dotted(field, key), exists(py)?)?;
        }
        d.set_item(field, &not_array)?;
        parts.push(d);
    }
    let test = if any_key { intern!(py, "$in") } else { intern!(py, "$all") };
    parts.push(field_cond(py, field, test, PyList::new(py, keys)?)?);
    wrap(py, intern!(py, "$or"), parts)
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
    if op == Op::JsonPathExists {
        return field_cond(py, dotted(leaf.field, key), intern!(py, "$exists"), true);
    }
    has_keys(py, leaf.field, &[key.to_owned()], true)
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
            contains(py, leaf.field, &leaf.val, leaf.field, leaf.path, 1, &mut parts)?;
            one_or_group(py, intern!(py, "$and"), parts)
        }
        Op::JsonHasKey | Op::JsonPathExists => has_key(py, leaf, op),
        Op::JsonHasAny | Op::JsonHasAll => {
            let keys = key_list(py, leaf.name, &leaf.val, leaf.path)?;
            has_keys(py, leaf.field, &keys, op == Op::JsonHasAny)
        }
        _ => size(py, leaf),
    }
}
