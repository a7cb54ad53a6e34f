//! Set operators (in, not_in, all: a list, or one value meaning a list of one) and ranges
//! (between, not_between).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use super::ops::Op;
use super::support::*;
use super::Leaf;

/// in / not_in / all. Documents inside `$in`/`$nin`/`$all` would be read as operators, so
/// a list holding one is spelled as one `$eq` per value instead.
fn membership<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    // a single value means a list of one
    let items = as_items(&leaf.val).unwrap_or_else(|| vec![leaf.val.clone()]);
    no_regex_elements(py, leaf.name, &items, leaf.path)?;
    if items.iter().any(|i| i.is_instance_of::<PyDict>()) {
        let mut parts = Vec::with_capacity(items.len());
        for item in items {
            parts.push(field_cond(py, leaf.key, intern!(py, "$eq"), item)?);
        }
        return match op {
            Op::NotIn => wrap(py, intern!(py, "$nor"), parts),
            Op::All => one_or_group(py, intern!(py, "$and"), parts),
            _ => one_or_group(py, intern!(py, "$or"), parts),
        };
    }
    let test = match op {
        Op::In => intern!(py, "$in"),
        Op::NotIn => intern!(py, "$nin"),
        _ => intern!(py, "$all"),
    };
    field_cond(py, leaf.key, test, PyList::new(py, items)?)
}

/// between / not_between: `[low, high]`, both inclusive, neither None.
fn range<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let bounds = need_list(py, leaf.name, &leaf.val, leaf.path)?;
    let [low, high] = bounds.as_slice() else {
        return Err(bad_bounds(py, leaf));
    };
    if low.is_none() || high.is_none() {
        return Err(bad_bounds(py, leaf));
    }
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$gte"), low)?;
    inner.set_item(intern!(py, "$lte"), high)?;
    let cond = PyDict::new(py);
    cond.set_item(leaf.key, inner)?;
    if op == Op::Between {
        Ok(cond)
    } else {
        wrap(py, intern!(py, "$nor"), vec![cond])
    }
}

fn bad_bounds(py: Python<'_>, leaf: &Leaf<'_, '_>) -> PyErr {
    spec_error(
        py,
        leaf.path,
        format!("operator '{}' expects [low, high] (two values, not None), got {}", leaf.name, repr(&leaf.val)),
    )
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    match op {
        Op::Between | Op::NotBetween => range(py, leaf, op),
        _ => membership(py, leaf, op),
    }
}
