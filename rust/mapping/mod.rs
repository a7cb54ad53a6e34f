//! Model data <-> MongoDB document: one pass each way.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/mapping.py` (same results, same errors).
//!
//! `map_to_doc` turns a `model_dump()` result into the document the driver encodes
//! (`_id`, `_version`, renames, Decimal -> Decimal128, UUID -> Binary subtype 4,
//! datetimes -> aware UTC, date -> UTC midnight, Enum -> value, set/tuple -> list);
//! `map_from_doc` reverses it for `model_validate`. BSON encoding itself stays with
//! the driver's C codec. Paths are built only when an error is raised.
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::invalid_document;
use crate::keys::stored_copy;

mod from_doc;
mod to_doc;
mod values;
mod walk;

pub use from_doc::map_from_doc;
pub use to_doc::map_to_doc;

/// Renamed fields (`_id`, `_version`, `field_map` targets) go last, after the fields they
/// replace are removed; a name written twice drops the document with an error.
pub(crate) fn finish_renames<'py>(
    py: Python<'py>,
    doc: &Bound<'py, PyDict>,
    removed: Vec<Bound<'py, PyAny>>,
    renamed: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    check_twice: bool,
) -> PyResult<()> {
    for key in removed {
        doc.del_item(key)?;
    }
    for (target, value) in renamed {
        if check_twice && doc.contains(&target)? {
            // the document is dropped: nothing half-written reaches the caller
            let text = target.str()?.to_string();
            return Err(invalid_document(
                py,
                format!(
                    "document field '{text}' is written twice; check field_map for two fields mapped to the same name or a field named like '_id'/'_version'"
                ),
            ));
        }
        doc.set_item(target, value)?;
    }
    Ok(())
}

/// The dict to write the result into: `data` itself when `owned` allows it (and it is a
/// plain dict), else a copy (one cheap clone of the table; only what changes is changed).
pub(crate) fn output_dict<'py>(data: &Bound<'py, PyDict>, owned: bool) -> PyResult<Bound<'py, PyDict>> {
    if owned && data.is_exact_instance_of::<PyDict>() {
        Ok(data.clone())
    } else {
        stored_copy(data)
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(map_to_doc, m)?)?;
    m.add_function(wrap_pyfunction!(map_from_doc, m)?)?;
    Ok(())
}
