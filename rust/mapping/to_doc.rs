//! Model data -> document: keys checked, values converted (see `values.rs`), the id field
//! becomes `_id` and `version` becomes `_version`, renames applied last.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyString};
use pyo3::PyTypeInfo;

use super::values::*;
use super::walk::*;
use super::*;
use crate::errors::{guarded, invalid_document, ErrorKind};
use crate::ffi::str_len;
use crate::keys::{
    bad_key_error, checked_key, child_path, display_path, key_problem, known_good_key, remember_good_key, MAX_DEPTH,
};
use crate::types::*;

/// Raises `InvalidDocument` naming the key when `key` cannot be a field name under `parent`.
pub(crate) fn check_key<'py>(py: Python<'py>, key: &Bound<'py, PyAny>, parent: &Path<'_, 'py>) -> PyResult<()> {
    if known_good_key(key) {
        return Ok(());
    }
    let Ok(s) = key.downcast::<PyString>() else {
        return Err(checked_key(py, key, &parent.render())
            .err()
            .unwrap_or_else(|| invalid_document(py, "bad key".into())));
    };
    let text = s.to_str()?;
    if let Some(problem) = key_problem(text) {
        return Err(bad_key_error(py, &child_path(&parent.render(), text), problem));
    }
    if let Ok(exact) = key.downcast_exact::<PyString>() {
        remember_good_key(exact);
    }
    Ok(())
}

pub(crate) fn unsupported(py: Python<'_>, value: &Bound<'_, PyAny>, path: &Path<'_, '_>) -> PyErr {
    let name =
        value.get_type().getattr("__qualname__").and_then(|n| n.extract::<String>()).unwrap_or_else(|_| "?".into());
    invalid_document(
        py,
        format!(
            "value of type {name} at '{}' cannot be stored in MongoDB; convert it to a supported type (str, int, float, bool, Decimal, datetime, date, UUID, Enum, bytes, list, dict, nested model) with a field serializer",
            display_path(&path.render())
        ),
    )
}

/// The document form of one value, or None when it is stored as it is.
pub(crate) fn to_doc_value<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
) -> Mapped<'py> {
    match classify(py, c, value)? {
        ValueType::Kept => Ok(None),
        ValueType::Int => int_in_range(py, value, path),
        ValueType::Dict => map_dict(py, c, value.downcast::<PyDict>()?, path, depth, owned, Direction::ToDoc),
        ValueType::Seq => map_seq(py, c, value, path, depth, owned, Direction::ToDoc),
        ValueType::Decimal => to_decimal128(py, c, value, path).map(Some),
        ValueType::DateTime => utc_datetime(py, c, value),
        ValueType::Date => utc_midnight(py, c, value).map(Some),
        ValueType::Uuid => uuid_binary(py, c, value).map(Some),
        ValueType::Enum => {
            // a member's value may be another member (or itself): each unwrap is a level
            if depth >= MAX_DEPTH {
                return Err(too_deep(py, path));
            }
            let inner = value.getattr(intern!(py, "_value_"))?;
            // the value belongs to the Enum member: never changed in place
            Ok(Some(to_doc_value(py, c, &inner, path, depth + 1, false)?.unwrap_or(inner)))
        }
        ValueType::BytesLike => Ok(Some(PyBytes::type_object(py).call1((value,))?)),
        ValueType::Model => {
            let dumped = value.call_method0(intern!(py, "model_dump"))?;
            let Ok(dict) = dumped.downcast::<PyDict>() else {
                return Err(unsupported(py, &dumped, path));
            };
            Ok(Some(
                map_dict(py, c, dict, path, depth, false, Direction::ToDoc)?.unwrap_or_else(|| dict.clone().into_any()),
            ))
        }
        ValueType::Unsupported => Err(unsupported(py, value, path)),
    }
}

/// Whether `key` is the id field or (when `versioned`) `version`; the length is compared
/// first, so most keys are never decoded.
pub(crate) fn is_reserved_key(
    key: &Bound<'_, PyString>,
    id_text: &str,
    id_len: usize,
    versioned: bool,
) -> PyResult<bool> {
    let len = str_len(key);
    if len == id_len && key.to_str()? == id_text {
        return Ok(true);
    }
    Ok(versioned && len == 7 && key.to_str()? == "version")
}

/// The MongoDB document of `data` (a `model_dump()` result); see the pure twin.
#[pyfunction]
#[pyo3(signature = (data, id_field, field_map, versioned, owned=false))]
pub fn map_to_doc<'py>(
    py: Python<'py>,
    data: &Bound<'py, PyAny>,
    id_field: &Bound<'py, PyString>,
    field_map: Option<&Bound<'py, PyDict>>,
    versioned: bool,
    owned: bool,
) -> PyResult<Bound<'py, PyDict>> {
    guarded(ErrorKind::Document, || {
        let c = cache(py)?;
        let Ok(data) = data.downcast::<PyDict>() else {
            let name: String = data.get_type().getattr("__qualname__")?.extract()?;
            return Err(invalid_document(py, format!("a model's data must be a dict, got {name}; pass model_dump()")));
        };
        let root = Path::ROOT;
        let doc = output_dict(data, owned)?;
        // iterate `data` (when it is `doc`, only values of existing keys change meanwhile)
        let owned = owned && doc.is(data);
        let id_text = id_field.to_str()?;
        let id_len = id_field.len()?;
        let mut removed: Vec<Bound<'py, PyAny>> = Vec::new();
        let mut renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)> = Vec::new();
        for (bkey, bvalue) in items(data) {
            // Fast path through borrowed references: an exact str key, no rename map (so no
            // lookup that could run Python code) and a plain value.
            if field_map.is_none() && plain(&bvalue) {
                if let Ok(k) = bkey.downcast_exact::<PyString>() {
                    if !is_reserved_key(k, id_text, id_len, versioned)? {
                        check_key(py, &bkey, &root)?;
                        continue;
                    }
                }
            }
            let (key, value) = (bkey, bvalue);
            let text = key.downcast::<PyString>().ok().map(|k| k.to_str()).transpose()?;
            if text == Some(id_text) || (versioned && text == Some("version")) {
                let (name, child) = if text == Some(id_text) {
                    (intern!(py, "_id"), root.key("_id"))
                } else {
                    (intern!(py, "_version"), root.key("_version"))
                };
                removed.push(key);
                if name.to_str()? == "_version" || !value.is_none() {
                    let new = to_doc_value(py, c, &value, &child, 1, owned)?;
                    renamed.push((name.clone().into_any(), new.unwrap_or(value)));
                }
                continue;
            }
            let target = match field_map {
                Some(map) => map.get_item(&key)?,
                None => None,
            };
            match target {
                None => {
                    check_key(py, &key, &root)?;
                    if let Some(new) = to_doc_value(py, c, &value, &root.obj(&key), 1, owned)? {
                        doc.set_item(&key, new)?;
                    }
                }
                Some(target) => {
                    check_key(py, &target, &root)?;
                    let new = to_doc_value(py, c, &value, &root.obj(&target), 1, owned)?;
                    removed.push(key);
                    renamed.push((target.clone(), new.unwrap_or(value)));
                }
            }
        }
        finish_renames(py, &doc, removed, renamed, true)?;
        Ok(doc)
    })
}
