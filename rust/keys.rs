//! Document key validation: MongoDB field names may not start with `$`, contain `.`
//! or NUL, and documents may not nest deeper than MongoDB's 100 levels.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/keys.py` (same messages).
use std::cell::RefCell;

use pyo3::prelude::*;
use pyo3::sync::GILProtected;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use pyo3::PyTypeInfo;

use crate::errors::invalid_document;
use crate::errors::{guarded, ErrorKind};

pub const MAX_DEPTH: usize = 100;

/// The path of a child under `parent`: `a.b` for keys, `a[3]` for indexes.
pub fn child_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        let mut s = String::with_capacity(parent.len() + 1 + key.len());
        s.push_str(parent);
        s.push('.');
        s.push_str(key);
        s
    }
}

pub fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

pub fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "<root>"
    } else {
        path
    }
}

/// Why `key` cannot be a MongoDB field name, if it cannot (a `.` anywhere is reported
/// before a NUL, as the pure twin does).
pub fn key_problem(key: &str) -> Option<&'static str> {
    let bytes = key.as_bytes();
    if bytes.first() == Some(&b'$') {
        return Some("field names may not start with '$'");
    }
    if !has_dot_or_nul(bytes) {
        return None;
    }
    if bytes.contains(&b'.') {
        Some("field names may not contain '.'")
    } else {
        Some("field names may not contain NUL")
    }
}

/// Whether `bytes` holds a `.` or a NUL, eight bytes at a time (keys are short and
/// checked on every write, so this is most of the cost of validating a document).
fn has_dot_or_nul(bytes: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    const DOTS: u64 = ONES * b'.' as u64;
    let has_zero_byte = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let mut chunks = bytes.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if has_zero_byte(w) || has_zero_byte(w ^ DOTS) {
            return true;
        }
    }
    chunks.remainder().iter().any(|&b| b == b'.' || b == 0)
}

// --- keys already found valid ---------------------------------------------------------
// A model's field names are the same str objects in every dump, so the mapping pass
// remembers the key objects it has validated (a small table indexed by address, holding
// a reference so that an address is never reused while it is remembered) and skips
// decoding and scanning them next time. str objects are immutable: a remembered key
// stays valid.
const KNOWN_SLOTS: usize = 1024;

static KNOWN_GOOD: GILProtected<RefCell<[Option<Py<PyString>>; KNOWN_SLOTS]>> =
    GILProtected::new(RefCell::new([const { None }; KNOWN_SLOTS]));

fn known_slot(key: &Bound<'_, PyAny>) -> usize {
    let address = key.as_ptr() as usize as u64;
    ((address >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 54) as usize % KNOWN_SLOTS
}

/// Whether `key` is a str object already validated by [`remember_good_key`].
pub fn known_good_key(key: &Bound<'_, PyAny>) -> bool {
    let table = KNOWN_GOOD.get(key.py()).borrow();
    matches!(&table[known_slot(key)], Some(known) if known.as_ptr() == key.as_ptr())
}

/// Remember `key`, a valid exact str, as valid (it replaces whatever shared its slot).
pub fn remember_good_key(key: &Bound<'_, PyString>) {
    let slot = known_slot(key.as_any());
    let old = KNOWN_GOOD.get(key.py()).borrow_mut()[slot].replace(key.clone().unbind());
    drop(old); // after the borrow ends: releasing a str runs no Python code, but be plain
}

pub fn bad_key_error(py: Python<'_>, path: &str, problem: &str) -> PyErr {
    invalid_document(
        py,
        format!("invalid field name at '{path}': {problem}; rename the field or store the name as a value"),
    )
}

/// A key's text in a path, as the pure twin's `key_text` gives it: a `str` (subclass or
/// not) by its characters, anything else by `str()`; never an error of its own.
pub fn key_text(key: &Bound<'_, PyAny>) -> String {
    let text = if key.is_exact_instance_of::<PyString>() || !key.is_instance_of::<PyString>() {
        key.str()
    } else {
        let py = key.py();
        PyString::type_object(py).getattr("__str__").and_then(|f| f.call1((key,))).and_then(|s| s.str())
    };
    match text.and_then(|t| t.to_str().map(str::to_owned)) {
        Ok(t) => t,
        Err(_) => format!("<unrepresentable {}>", key.get_type().name().map(|n| n.to_string()).unwrap_or_default()),
    }
}

pub fn too_deep_error(py: Python<'_>, path: &str) -> PyErr {
    invalid_document(
        py,
        format!(
            "document at '{}' nests deeper than {MAX_DEPTH} levels (MongoDB's limit); flatten it or check for a cycle",
            display_path(path)
        ),
    )
}

/// Checks one key and returns it as `&str`-backed owned text.
pub fn checked_key(py: Python<'_>, key: &Bound<'_, PyAny>, parent: &str) -> PyResult<String> {
    let Ok(s) = key.downcast::<PyString>() else {
        let shown = crate::errors::shown(key);
        return Err(invalid_document(
            py,
            format!(
                "field name {shown} at '{}' is not a string; MongoDB field names must be str",
                display_path(parent)
            ),
        ));
    };
    let text = s.to_str()?;
    let path = child_path(parent, text);
    if let Some(problem) = key_problem(text) {
        return Err(bad_key_error(py, &path, problem));
    }
    Ok(path)
}

/// A plain dict of the items `dict` stores: a subclass's own mapping methods (`keys`,
/// `__iter__`, ...) are not asked, as `PyDict_Copy` / `dict(x)` would ask them.
pub fn stored_copy<'py>(dict: &Bound<'py, PyDict>) -> PyResult<Bound<'py, PyDict>> {
    if dict.is_exact_instance_of::<PyDict>() {
        return dict.copy();
    }
    let out = PyDict::new(dict.py());
    for (k, v) in dict.iter() {
        out.set_item(k, v)?;
    }
    Ok(out)
}

/// Validate `value` found at `path`, `depth` levels below the document root.
/// True when `value` has no invalid key at any depth: the allocation-free check that runs
/// first; only a failing value is walked again with paths (`walk`) to name the offender.
pub fn all_valid(value: &Bound<'_, PyAny>, depth: usize) -> PyResult<bool> {
    if let Ok(dict) = value.downcast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Ok(false);
        }
        for (k, v) in dict.iter() {
            if !key_ok(&k)? || !all_valid(&v, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(list) = value.downcast::<PyList>() {
        if depth >= MAX_DEPTH {
            return Ok(false);
        }
        for v in list.iter() {
            if !all_valid(&v, depth + 1)? {
                return Ok(false);
            }
        }
    } else if let Ok(tuple) = value.downcast::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Ok(false);
        }
        for v in tuple.iter() {
            if !all_valid(&v, depth + 1)? {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

pub fn key_ok(key: &Bound<'_, PyAny>) -> PyResult<bool> {
    match key.downcast::<PyString>() {
        Ok(s) => Ok(key_problem(s.to_str()?).is_none()),
        Err(_) => Ok(false),
    }
}

/// Validate every field of `doc` (found at `path`); raises the first offence with its path.
pub fn walk(py: Python<'_>, value: &Bound<'_, PyAny>, path: &str, depth: usize) -> PyResult<()> {
    if let Ok(dict) = value.downcast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep_error(py, path));
        }
        for (k, v) in dict.iter() {
            let child = checked_key(py, &k, path)?;
            walk(py, &v, &child, depth + 1)?;
        }
    } else if let Ok(list) = value.downcast::<PyList>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep_error(py, path));
        }
        for (i, v) in list.iter().enumerate() {
            walk(py, &v, &index_path(path, i), depth + 1)?;
        }
    } else if let Ok(tuple) = value.downcast::<PyTuple>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep_error(py, path));
        }
        for (i, v) in tuple.iter().enumerate() {
            walk(py, &v, &index_path(path, i), depth + 1)?;
        }
    }
    Ok(())
}

/// Raise `InvalidDocument` naming the first offending path in `doc`.
#[pyfunction]
pub fn validate_keys(py: Python<'_>, doc: &Bound<'_, PyAny>) -> PyResult<()> {
    guarded(ErrorKind::Document, || {
        if all_valid(doc, 0)? {
            return Ok(());
        }
        walk(py, doc, "", 0)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(validate_keys, m)?)?;
    Ok(())
}
