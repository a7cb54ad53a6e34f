//! Upsert statements for projection documents (hot path 3).
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/bulk.py` (same results and messages;
//! the semantics are documented there).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};

use crate::errors::invalid_document;
use crate::errors::{guarded, ErrorKind};
use crate::keys::{
    all_valid, checked_key, display_path, index_path, key_ok, stored_copy, too_deep_error, walk, MAX_DEPTH,
};

fn type_name(value: &Bound<'_, PyAny>) -> PyResult<String> {
    Ok(value.get_type().getattr("__name__")?.to_string())
}

/// `value` with every dict's fields sorted by name, validated on the way.
fn canonical<'py>(py: Python<'py>, value: &Bound<'py, PyAny>, path: &str, depth: usize) -> PyResult<Bound<'py, PyAny>> {
    if let Ok(dict) = value.downcast::<PyDict>() {
        if depth >= MAX_DEPTH {
            return Err(too_deep_error(py, path));
        }
        let mut fields: Vec<(String, String, Bound<'py, PyAny>)> = Vec::with_capacity(dict.len());
        for (k, v) in dict.iter() {
            let child = checked_key(py, &k, path)?;
            let name = k.downcast::<PyString>()?.to_str()?.to_owned();
            fields.push((name, child, v));
        }
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        let out = PyDict::new(py);
        for (name, child, v) in fields {
            out.set_item(name, canonical(py, &v, &child, depth + 1)?)?;
        }
        return Ok(out.into_any());
    }
    let items: Option<Vec<Bound<'py, PyAny>>> = if let Ok(list) = value.downcast::<PyList>() {
        Some(list.iter().collect())
    } else if let Ok(tuple) = value.downcast::<PyTuple>() {
        Some(tuple.iter().collect())
    } else {
        None
    };
    match items {
        Some(items) => {
            if depth >= MAX_DEPTH {
                return Err(too_deep_error(py, path));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, v) in items.iter().enumerate() {
                out.push(canonical(py, v, &index_path(path, i), depth + 1)?);
            }
            Ok(PyList::new(py, out)?.into_any())
        }
        None => Ok(value.clone()),
    }
}

fn checked_id<'py>(py: Python<'py>, key: &Bound<'py, PyAny>, path: &str) -> PyResult<Bound<'py, PyAny>> {
    if key.is_none() {
        return Err(invalid_document(
            py,
            format!("the key at '{}' is None; give every document a key", display_path(path)),
        ));
    }
    if key.downcast::<PyList>().is_ok() || key.downcast::<PyTuple>().is_ok() {
        return Err(invalid_document(
            py,
            format!(
                "the key at '{}' is a list; MongoDB _id cannot be an array, use a dict for a composite key",
                display_path(path)
            ),
        ));
    }
    canonical(py, key, path, 1)
}

/// The `_id` stored for `key`: dict keys get their fields in sorted order.
#[pyfunction]
pub fn canonical_id<'py>(py: Python<'py>, key: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    guarded(ErrorKind::Document, || checked_id(py, key, "_id"))
}

/// Python strings made once per call instead of once per document.
struct Names<'py> {
    id_field: Bound<'py, PyString>,
    underscore_id: Bound<'py, PyString>,
    position_field: Option<Bound<'py, PyString>>,
    event_id_field: Option<Bound<'py, PyString>>,
}

/// True when `value` (at `depth`) has only valid field names and stays within the depth
/// limit. Builds no paths: it is the fast pass; on `false` the path-building `walk`
/// runs to raise the exact error (same order, so the same first offence).
fn check_fields(py: Python<'_>, doc: &Bound<'_, PyDict>, path: &dyn Fn() -> String) -> PyResult<()> {
    for (k, v) in doc.iter() {
        if !key_ok(&k)? || !all_valid(&v, 1)? {
            let parent = path();
            let child = checked_key(py, &k, &parent)?;
            walk(py, &v, &child, 1)?;
        }
    }
    Ok(())
}

fn guard<'py>(py: Python<'py>, op: &Bound<'py, PyString>, value: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item(op, value)?;
    Ok(d)
}

fn statement<'py>(
    py: Python<'py>,
    doc: &Bound<'py, PyAny>,
    path: &dyn Fn() -> String,
    names: &Names<'py>,
) -> PyResult<Bound<'py, PyTuple>> {
    let Ok(doc) = doc.downcast::<PyDict>() else {
        return Err(invalid_document(
            py,
            format!("the document at '{}' is a {}, not a dict", display_path(&path()), type_name(doc)?),
        ));
    };
    let (key_name, key) = if let Some(key) = doc.get_item(&names.id_field)? {
        (&names.id_field, key)
    } else if let Some(key) = doc.get_item(&names.underscore_id)? {
        (&names.underscore_id, key)
    } else {
        return Err(invalid_document(
            py,
            format!(
                "the document at '{}' has no '{}' (or '_id') field; give every document its key",
                display_path(&path()),
                names.id_field.to_str()?
            ),
        ));
    };
    let plain_key = key_ok(key_name.as_any())?
        && !key.is_none()
        && key.downcast::<PyDict>().is_err()
        && key.downcast::<PyList>().is_err()
        && key.downcast::<PyTuple>().is_err();
    let id = if plain_key {
        key
    } else {
        let key_path = checked_key(py, key_name.as_any(), &path())?;
        checked_id(py, &key, &key_path)?
    };
    let filter = PyDict::new(py);
    filter.set_item(&names.underscore_id, id)?;
    check_fields(py, doc, path)?;
    let body = stored_copy(doc)?;
    body.del_item(key_name)?;
    if body.contains(&names.underscore_id)? {
        body.del_item(&names.underscore_id)?;
    }
    if let Some(field) = &names.position_field {
        if let Some(position) = body.get_item(field)? {
            if !position.is_none() {
                let gte = guard(py, intern!(py, "$gte"), position)?;
                filter.set_item(field, guard(py, intern!(py, "$not"), gte.into_any())?)?;
            }
        }
    }
    if let Some(field) = &names.event_id_field {
        if let Some(event_id) = body.get_item(field)? {
            if !event_id.is_none() {
                filter.set_item(field, guard(py, intern!(py, "$ne"), event_id)?)?;
            }
        }
    }
    let update = guard(py, intern!(py, "$set"), body.into_any())?;
    PyTuple::new(py, [filter.into_any(), update.into_any()])
}

/// One `(filter, update)` upsert statement per document (see `_pure/bulk.py`).
#[pyfunction]
#[pyo3(signature = (docs, id_field="id", position_field=Some("_last_position"), event_id_field=Some("_last_event_id"), label="docs"))]
pub fn build_upserts<'py>(
    py: Python<'py>,
    docs: &Bound<'py, PyAny>,
    id_field: &str,
    position_field: Option<&str>,
    event_id_field: Option<&str>,
    label: &str,
) -> PyResult<Bound<'py, PyList>> {
    guarded(ErrorKind::Document, || {
        let items: Vec<Bound<'py, PyAny>> = if let Ok(list) = docs.downcast::<PyList>() {
            list.iter().collect()
        } else if let Ok(tuple) = docs.downcast::<PyTuple>() {
            tuple.iter().collect()
        } else {
            return Err(invalid_document(py, format!("docs must be a list of dicts, not {}", type_name(docs)?)));
        };
        let names = Names {
            id_field: PyString::new(py, id_field),
            underscore_id: intern!(py, "_id").clone(),
            position_field: position_field.map(|f| PyString::new(py, f)),
            event_id_field: event_id_field.map(|f| PyString::new(py, f)),
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, doc) in items.iter().enumerate() {
            let path = || if label.is_empty() { String::new() } else { index_path(label, i) };
            out.push(statement(py, doc, &path, &names)?);
        }
        PyList::new(py, out)
    })
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(build_upserts, m)?)?;
    m.add_function(wrap_pyfunction!(canonical_id, m)?)?;
    Ok(())
}
