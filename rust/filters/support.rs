//! What every operator family shares: where a node is (for error messages), the error
//! builders, value checks, and the small dicts a filter is made of.
use pyo3::exceptions::PyOverflowError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::errors::invalid_specification;
use crate::keys::{display_path, key_problem, MAX_DEPTH};

pub(super) const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r', '\x0b', '\x0c'];

pub(super) static RE_COMPILE: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

pub(super) static RE_ERROR: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

pub(super) static RE_PATTERN: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

pub(super) static BSON_REGEX: GILOnceCell<Py<PyAny>> = GILOnceCell::new();

pub(super) fn cached<'py>(
    py: Python<'py>,
    cell: &'static GILOnceCell<Py<PyAny>>,
    module: &str,
    name: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let obj = cell.get_or_try_init(py, || -> PyResult<Py<PyAny>> { Ok(py.import(module)?.getattr(name)?.unbind()) })?;
    Ok(obj.bind(py).clone())
}

/// Where a node sits in the tree; rendered only when an error names it.
#[derive(Clone, Copy)]
pub(super) struct Path<'a> {
    parent: Option<(&'a Path<'a>, usize)>,
}

impl<'a> Path<'a> {
    pub(super) fn root() -> Self {
        Path { parent: None }
    }
    pub(super) fn child(&'a self, index: usize) -> Path<'a> {
        Path { parent: Some((self, index)) }
    }
    pub(super) fn render(&self) -> String {
        match self.parent {
            None => String::new(),
            Some((p, i)) => {
                let base = p.render();
                if base.is_empty() {
                    format!("conditions[{i}]")
                } else {
                    format!("{base}.conditions[{i}]")
                }
            }
        }
    }
}

pub(super) fn spec_error(_py: Python<'_>, path: &Path<'_>, problem: String) -> PyErr {
    let rendered = path.render();
    invalid_specification(format!("invalid specification at '{}': {}", display_path(&rendered), problem))
}

/// The problem named when a specification tree nests deeper than MongoDB documents may.
pub(super) fn too_deep_problem() -> String {
    format!("the specification nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it")
}

pub(super) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map(|n| n.to_string()).unwrap_or_default()
}

pub(super) fn repr(v: &Bound<'_, PyAny>) -> String {
    crate::errors::shown(v)
}

pub(super) fn repr_str(py: Python<'_>, s: &str) -> String {
    repr(PyString::new(py, s).as_any())
}

pub(super) fn opt_repr(v: &Option<Bound<'_, PyAny>>) -> String {
    match v {
        Some(x) => repr(x),
        None => "None".to_owned(),
    }
}

/// Why `attr` is not a usable field path, if it is not.
pub(super) fn field_path_problem(py: Python<'_>, attr: &Bound<'_, PyAny>) -> PyResult<Option<String>> {
    let Ok(s) = attr.downcast::<PyString>() else {
        return Ok(Some(format!("field path must be a string, got {}", type_name(attr))));
    };
    let text = s.to_str()?;
    Ok(str_path_problem(py, text))
}

/// Fast check of the rules below in one pass over the bytes (the common, valid case).
pub(super) fn path_ok(text: &str) -> bool {
    let mut segment_start = true;
    for &c in text.as_bytes() {
        if (segment_start && (c == b'.' || c == b'$')) || c == 0 {
            return false;
        }
        segment_start = c == b'.';
    }
    !segment_start
}

pub(super) fn str_path_problem(py: Python<'_>, text: &str) -> Option<String> {
    if path_ok(text) {
        return None;
    }
    for segment in text.split('.') {
        let problem = if segment.is_empty() { Some("empty segment") } else { key_problem(segment) };
        if let Some(p) = problem {
            return Some(format!("invalid field path {}: {}", repr_str(py, text), p));
        }
    }
    None
}

pub(super) fn field_cond<'py>(
    py: Python<'py>,
    field: impl IntoPyObject<'py>,
    op: &Bound<'py, PyString>,
    val: impl IntoPyObject<'py>,
) -> PyResult<Bound<'py, PyDict>> {
    let inner = PyDict::new(py);
    inner.set_item(op, val)?;
    let outer = PyDict::new(py);
    outer.set_item(field, inner)?;
    Ok(outer)
}

pub(super) fn wrap<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyString>,
    parts: Vec<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(key, PyList::new(py, parts)?)?;
    Ok(d)
}

pub(super) fn match_nothing(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    wrap(py, intern!(py, "$nor"), vec![PyDict::new(py)])
}

pub(super) fn need_str<'a, 'py>(
    py: Python<'py>,
    op: &str,
    val: &'a Bound<'py, PyAny>,
    path: &Path<'_>,
) -> PyResult<&'a Bound<'py, PyString>> {
    val.downcast::<PyString>()
        .map_err(|_| spec_error(py, path, format!("operator '{op}' expects a string, got {}", type_name(val))))
}

pub(super) fn as_items<'py>(val: &Bound<'py, PyAny>) -> Option<Vec<Bound<'py, PyAny>>> {
    if let Ok(l) = val.downcast::<PyList>() {
        Some(l.iter().collect())
    } else if let Ok(t) = val.downcast::<PyTuple>() {
        Some(t.iter().collect())
    } else {
        None
    }
}

pub(super) fn need_list<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
) -> PyResult<Vec<Bound<'py, PyAny>>> {
    as_items(val).ok_or_else(|| spec_error(py, path, format!("operator '{op}' expects a list, got {}", type_name(val))))
}

pub(super) fn no_regex_elements(py: Python<'_>, op: &str, items: &[Bound<'_, PyAny>], path: &Path<'_>) -> PyResult<()> {
    if items.iter().all(|i| {
        i.is_instance_of::<PyString>() || i.is_instance_of::<PyInt>() || i.is_instance_of::<PyFloat>() || i.is_none()
    }) {
        return Ok(());
    }
    let pattern = cached(py, &RE_PATTERN, "re", "Pattern")?;
    let regex = cached(py, &BSON_REGEX, "bson.regex", "Regex")?;
    for item in items {
        if item.is_instance_of::<PyString>()
            || item.is_instance_of::<PyInt>()
            || item.is_instance_of::<PyFloat>()
            || item.is_none()
        {
            continue;
        }
        if item.is_instance(&pattern)? || item.is_instance(&regex)? {
            return Err(spec_error(
                py,
                path,
                format!(
                    "operator '{op}' got a regular expression object as a value; MongoDB would interpret it as a pattern: use regex for patterns or pass the text"
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn need_number(
    py: Python<'_>,
    op: &str,
    name: &str,
    val: &Bound<'_, PyAny>,
    path: &Path<'_>,
) -> PyResult<f64> {
    if val.is_instance_of::<PyBool>() || !(val.is_instance_of::<PyInt>() || val.is_instance_of::<PyFloat>()) {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects '{name}' to be a number, got {}", type_name(val)),
        ));
    }
    let number: f64 = match val.extract() {
        Ok(n) => n,
        Err(e) if e.is_instance_of::<PyOverflowError>(py) => f64::INFINITY, // an int beyond float range
        Err(e) => return Err(e),
    };
    if !number.is_finite() || number < 0.0 {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects '{name}' to be a finite number >= 0, got {}", repr(val)),
        ));
    }
    Ok(number)
}

pub(super) fn flag(py: Python<'_>, op: &str, val: &Option<Bound<'_, PyAny>>, path: &Path<'_>) -> PyResult<bool> {
    match val {
        None => Ok(true),
        Some(v) if v.is_none() => Ok(true),
        Some(v) => match v.downcast::<PyBool>() {
            Ok(b) => Ok(b.is_true()),
            Err(_) => {
                Err(spec_error(py, path, format!("operator '{op}' takes no value or True/False, got {}", type_name(v))))
            }
        },
    }
}

pub(super) fn key_in(key: &Bound<'_, PyAny>, allowed: &[&str]) -> PyResult<bool> {
    match key.downcast::<PyString>() {
        Ok(s) => {
            let k = s.to_str()?;
            Ok(allowed.contains(&k))
        }
        Err(_) => Ok(false),
    }
}

pub(super) fn dotted(field: &str, key: &str) -> String {
    let mut s = String::with_capacity(field.len() + 1 + key.len());
    s.push_str(field);
    s.push('.');
    s.push_str(key);
    s
}

pub(super) fn unknown(py: Python<'_>, op: &str, path: &Path<'_>) -> PyErr {
    spec_error(
        py,
        path,
        format!(
            "unknown operator {}; use one listed in docs/specifications.md or register it on the registry",
            repr_str(py, op)
        ),
    )
}

pub(super) fn nested_only_top(py: Python<'_>, op: &str, path: &Path<'_>) -> PyErr {
    spec_error(
        py,
        path,
        format!(
            "operator '{op}' is only allowed at the top level or inside top-level 'and' groups (MongoDB rejects $near and $text under $or / $nor)"
        ),
    )
}

/// `parts[0]` alone, or `{key: parts}`.
pub(super) fn one_or_group<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyString>,
    mut parts: Vec<Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyDict>> {
    if parts.len() == 1 {
        if let Some(only) = parts.pop() {
            return Ok(only);
        }
    }
    wrap(py, key, parts)
}
