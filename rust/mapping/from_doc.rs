//! Document -> model data: `_id` / `_version` / renames back, Decimal128 -> Decimal,
//! Binary subtype 4 -> UUID, datetimes to aware UTC; the caller's document is never changed.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};
use pyo3::PyTypeInfo;

use super::values::*;
use super::walk::*;
use super::*;
use crate::errors::{guarded, invalid_document, ErrorKind};
use crate::ffi::str_len;
use crate::types::*;

/// (`_owned` is part of the rule signature the walker shares: a document being read is
/// the caller's, never changed in place.)
pub(crate) fn from_doc_value<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    _owned: bool,
) -> Mapped<'py> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyInt>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(None);
    }
    if let Ok(dict) = value.downcast_exact::<PyDict>() {
        return map_dict(py, c, dict, path, depth, false, Direction::FromDoc);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_seq(py, c, value, path, depth, false, Direction::FromDoc);
    }
    let ty = value.get_type();
    if ty.is(c.decimal128.bind(py)) {
        return from_decimal128(py, c, value).map(Some);
    }
    if ty.is(c.datetime.bind(py)) {
        return utc_datetime(py, c, value);
    }
    if ty.is(c.binary.bind(py)) {
        return binary_value(py, c, value);
    }
    if ty.is(c.uuid.bind(py)) || ty.is(c.objectid.bind(py)) {
        return Ok(None); // what the cascade below concludes, sooner
    }
    if let Ok(dict) = value.downcast::<PyDict>() {
        return map_dict(py, c, dict, path, depth, false, Direction::FromDoc);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return map_seq(py, c, value, path, depth, false, Direction::FromDoc);
    }
    if value.is_instance(c.decimal128.bind(py))? {
        return from_decimal128(py, c, value).map(Some);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    Ok(None)
}

/// `Some("_id")` / `Some("_version")` for those keys, else None (cheap length test first:
/// most keys are neither).
pub(crate) fn reserved_name<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a str>> {
    let Ok(s) = key.downcast::<PyString>() else {
        return Ok(None);
    };
    let len = str_len(s);
    if len != 3 && len != 8 {
        return Ok(None);
    }
    let text = s.to_str()?;
    Ok(if text == "_id" || text == "_version" { Some(text) } else { None })
}

/// The model data of a stored document, ready for `model_validate`; see the pure twin.
#[pyfunction]
#[pyo3(signature = (doc, id_field, reverse_map, versioned))]
pub fn map_from_doc<'py>(
    py: Python<'py>,
    doc: &Bound<'py, PyAny>,
    id_field: &Bound<'py, PyString>,
    reverse_map: Option<&Bound<'py, PyDict>>,
    versioned: bool,
) -> PyResult<Bound<'py, PyDict>> {
    guarded(ErrorKind::Document, || {
        let c = cache(py)?;
        let source: Bound<'py, PyDict> = if let Ok(dict) = doc.downcast::<PyDict>() {
            dict.clone()
        } else if doc.is_instance(c.mapping.bind(py))? {
            // other mappings: a plain snapshot, which is then ours to change
            PyDict::type_object(py).call1((doc,))?.downcast_into::<PyDict>()?
        } else {
            let name: String = doc.get_type().getattr("__qualname__")?.extract()?;
            return Err(invalid_document(py, format!("a stored document must be a mapping, got {name}")));
        };
        // the caller's dict is copied; a snapshot of another mapping is ours to change
        let data = output_dict(&source, !doc.is(&source))?;
        let root = Path::ROOT;
        let mut removed: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::new();
        let mut saw_version = false;
        for (key, value) in items(&source) {
            if reverse_map.is_none()
                && (plain(&value) || value.is_exact_instance_of::<PyInt>())
                && reserved_name(&key)?.is_none()
            {
                continue;
            }
            // nested containers stay the caller's (a snapshot of a mapping is shallow)
            let new = from_doc_value(py, c, &value, &root.obj(&key), 1, false)?;
            let name: Option<Bound<'py, PyAny>> = match reserved_name(&key)? {
                Some("_id") => Some(id_field.clone().into_any()),
                Some("_version") if versioned => {
                    saw_version = true;
                    Some(intern!(py, "version").clone().into_any())
                }
                _ => match reverse_map {
                    Some(map) => map.get_item(&key)?,
                    None => None,
                },
            };
            match name {
                Some(name) => {
                    removed.push(key);
                    renamed.push((name, new.unwrap_or(value)));
                }
                None => {
                    if let Some(new) = new {
                        data.set_item(&key, new)?;
                    }
                }
            }
        }
        // renamed fields win over a same-named field
        finish_renames(py, &data, removed, renamed, false)?;
        if versioned && !saw_version {
            data.set_item(intern!(py, "version"), 0)?;
        }
        Ok(data)
    })
}
