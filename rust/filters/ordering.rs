//! Orderings -> sort specs and field selections -> projections (field paths checked with
//! the same rules as filters).
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use super::support::*;
use crate::errors::{guarded, invalid_specification, ErrorKind};

fn sort_error(_py: Python<'_>, item: &Bound<'_, PyAny>, problem: String) -> PyErr {
    invalid_specification(format!("invalid ordering {}: {problem}", repr(item)))
}

/// 1 / -1 for a direction given as an int (not a bool), a float, or 'asc' / 'desc'; the
/// value's own comparison methods are not asked (they may raise or lie).
fn sort_direction(raw: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let number = if raw.is_instance_of::<PyBool>() {
        None
    } else if raw.is_instance_of::<PyInt>() {
        raw.extract::<i64>().ok()
    } else if let Ok(f) = raw.downcast::<PyFloat>() {
        let f = f.value();
        (f == 1.0 || f == -1.0).then_some(f as i64)
    } else if let Ok(s) = raw.downcast::<PyString>() {
        match s.to_str()? {
            "asc" => Some(1),
            "desc" => Some(-1),
            _ => None,
        }
    } else {
        None
    };
    Ok(number.filter(|n| *n == 1 || *n == -1))
}

fn sort_item(py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<(String, i64)> {
    let (name, direction): (String, i64) = if let Ok(s) = item.downcast::<PyString>() {
        let text = s.to_str()?.trim_matches(|c| WHITESPACE.contains(&c));
        if let Some(rest) = text.strip_prefix('-') {
            (rest.to_owned(), -1)
        } else if let Some(rest) = text.strip_prefix('+') {
            (rest.to_owned(), 1)
        } else {
            (text.to_owned(), 1)
        }
    } else if let Some(pair) = as_items(item).filter(|p| p.len() == 2) {
        let Some(direction) = sort_direction(&pair[1])? else {
            return Err(sort_error(py, item, "direction must be 1, -1, 'asc' or 'desc'".to_owned()));
        };
        let is_asc = direction == 1;
        if let Some(problem) = field_path_problem(py, &pair[0])? {
            return Err(sort_error(py, item, problem));
        }
        (pair[0].downcast::<PyString>()?.to_str()?.to_owned(), if is_asc { 1 } else { -1 })
    } else {
        return Err(sort_error(py, item, "use 'field', '-field' or (field, 1 | -1)".to_owned()));
    };
    if let Some(problem) = str_path_problem(py, &name) {
        return Err(sort_error(py, item, problem));
    }
    Ok((name, direction))
}

/// `"-created_at,name"` / `["-created_at", ("name", 1)]` -> `[("created_at", -1), ("name", 1)]`;
/// every string, alone or in a list, may name several fields separated by commas.
#[pyfunction]
pub fn compile_sort<'py>(py: Python<'py>, order_by: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    guarded(ErrorKind::Specification, || {
        let out = PyList::empty(py);
        if order_by.is_none() {
            return Ok(out);
        }
        let given: Vec<Bound<'py, PyAny>> = if order_by.is_instance_of::<PyString>() {
            vec![order_by.clone()]
        } else if let Some(items) = as_items(order_by) {
            items
        } else {
            return Err(sort_error(py, order_by, "expected a string or a list of fields".to_owned()));
        };
        // a string item may name several fields: "-created_at,name"
        let mut items: Vec<Bound<'py, PyAny>> = Vec::with_capacity(given.len());
        for item in given {
            match item.downcast::<PyString>() {
                Ok(s) if s.to_str()?.contains(',') => {
                    items.extend(s.to_str()?.split(',').map(|p| PyString::new(py, p).into_any()));
                }
                _ => items.push(item),
            }
        }
        let mut seen: Vec<String> = Vec::with_capacity(items.len());
        for item in &items {
            let (name, direction) = sort_item(py, item)?;
            if seen.contains(&name) {
                return Err(sort_error(py, item, format!("field {} is ordered twice", repr_str(py, &name))));
            }
            out.append(PyTuple::new(
                py,
                [name.clone().into_pyobject(py)?.into_any(), direction.into_pyobject(py)?.into_any()],
            )?)?;
            seen.push(name);
        }
        Ok(out)
    })
}

/// `["name", "address.city"]` -> `{"name": 1, "address.city": 1}`; None or empty -> None.
#[pyfunction]
pub fn compile_projection<'py>(py: Python<'py>, fields: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyDict>>> {
    guarded(ErrorKind::Specification, || {
        if fields.is_none() {
            return Ok(None);
        }
        let items: Vec<Bound<'py, PyAny>> = if fields.is_instance_of::<PyString>() {
            vec![fields.clone()]
        } else if let Some(items) = as_items(fields) {
            items
        } else {
            return Err(invalid_specification(format!(
                "invalid field selection {}: expected a list of field paths",
                repr(fields)
            )));
        };
        if items.is_empty() {
            return Ok(None);
        }
        let out = PyDict::new(py);
        for item in &items {
            if let Some(problem) = field_path_problem(py, item)? {
                return Err(invalid_specification(format!("invalid field selection {}: {problem}", repr(item))));
            }
            out.set_item(item, 1)?;
        }
        Ok(Some(out))
    })
}
