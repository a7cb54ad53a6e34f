//! Conversions of single values: Decimal <-> Decimal128, UUID <-> Binary subtype 4,
//! datetimes to aware UTC, dates to UTC midnight, ints within 64 bits.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILProtected;
use pyo3::types::{PyBytes, PyDict, PyString, PyTuple};
use std::cell::RefCell;

use super::walk::*;
use crate::decimal128::{bid_of_decimal_text, bid_of_parts, decimal_text_of_bid, parts_of_bid, BidError, TextBuf, INF};
use crate::errors::invalid_document;
use crate::ffi::{call_with_one_arg, u64_bits, DecimalLayout};
use crate::keys::display_path;
use crate::types::*;

pub(crate) fn uuid_binary<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let int = match &c.uuid_slots {
        Some((_, slot, _)) if value.get_type().is(c.uuid.bind(py)) => slot.get(value)?,
        _ => value.getattr(intern!(py, "int"))?,
    };
    let n: u128 = int.extract()?;
    let raw = n.to_be_bytes();
    if c.binary_private {
        return private_binary(py, c, &raw);
    }
    c.binary.bind(py).call1((PyBytes::new(py, &raw), 4))
}

/// UTC midnight of a date (exact dates through `datetime.combine`, which reads the date's
/// fields directly; a subclass's own `year` / `month` / `day` are asked, as the pure twin does).
pub(crate) fn utc_midnight<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    if value.get_type().is(c.date.bind(py)) {
        if let Some((layout, ymd)) = c.date_layout.as_ref().and_then(|l| Some((l, l.ymd(value)?))) {
            return layout.midnight(c.datetime.bind(py), ymd, c.utc.bind(py));
        }
        return c.combine.bind(py).call1((value, c.midnight_utc.bind(py)));
    }
    let y = value.getattr(intern!(py, "year"))?;
    let m = value.getattr(intern!(py, "month"))?;
    let d = value.getattr(intern!(py, "day"))?;
    c.datetime.bind(py).call1((y, m, d, 0, 0, 0, 0, c.utc.bind(py)))
}

/// The checked Decimal layout, when `value` is an exact Decimal (a subclass keeps the
/// text route, as before).
fn exact_decimal_layout<'c>(py: Python<'_>, c: &'c Cache, value: &Bound<'_, PyAny>) -> Option<&'c DecimalLayout> {
    let layout = c.decimal_layout.as_ref()?;
    value.get_type().is(c.decimal.bind(py)).then_some(layout)
}

pub(crate) fn to_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    if let Some(layout) = exact_decimal_layout(py, c, value) {
        if let Some((high, low)) = layout.parts(value).and_then(bid_of_parts) {
            return new_decimal128(py, c, high, low);
        }
    }
    // a subclass's own __str__ is not asked: the text of the Decimal it holds (pure twin:
    // `Decimal.as_tuple(value)`)
    let text = c.decimal.bind(py).getattr(intern!(py, "__str__"))?.call1((value,))?;
    let text = text.downcast::<PyString>()?.to_str()?;
    match bid_of_decimal_text(text) {
        Ok((high, low)) => new_decimal128(py, c, high, low),
        Err(BidError::Inexact) => Err(invalid_document(
            py,
            format!(
                "Decimal {text} at '{}' cannot be stored exactly as Decimal128 (at most 34 significant digits, exponent -6176..6111); round it with quantize() or store it as a string",
                display_path(&path.render())
            ),
        )),
        Err(BidError::Malformed) => Err(invalid_document(
            py,
            format!(
                "Decimal at '{}' gave the text {text:?}, which is not a decimal number; store a plain Decimal",
                display_path(&path.render())
            ),
        )),
        Err(BidError::NanPayload) => Err(invalid_document(
            py,
            format!(
                "Decimal {text} at '{}' is a NaN with a payload, which Decimal128 cannot store; use a plain NaN or a string",
                display_path(&path.render())
            ),
        )),
    }
}

pub(crate) fn from_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let (high, low) = if let Some((high, low)) = exact_slots(c, value) {
        (u64_bits(py, &high.get(value)?)?, u64_bits(py, &low.get(value)?)?)
    } else {
        value.call_method0(intern!(py, "__getstate__"))?.extract::<(u64, u64)>()?
    };
    if let (Some(layout), Some(parts)) = (&c.decimal_layout, parts_of_bid(high, low)) {
        return layout.build(c.decimal.bind(py), parts);
    }
    let mut text = TextBuf::new();
    decimal_text_of_bid(high, low, &mut text);
    let text = PyString::new(py, text.as_str());
    if high & INF == INF {
        // Infinity, NaN, sNaN: the constructor keeps them as they are
        return c.decimal.bind(py).call1((text,));
    }
    call_with_one_arg(ONE_ARG.get(py), c.exact_decimal.bind(py), text.into_any())
}

/// The args tuple `from_decimal128` reuses (see `ffi::call_with_one_arg`).
pub(crate) static ONE_ARG: GILProtected<RefCell<Option<Py<PyTuple>>>> = GILProtected::new(RefCell::new(None));

pub(crate) fn utc_datetime<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
    let utc = c.utc.bind(py);
    let tz = value.getattr(intern!(py, "tzinfo"))?;
    if tz.is_none() {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "tzinfo"), utc)?;
        Ok(Some(value.call_method(intern!(py, "replace"), (), Some(&kwargs))?))
    } else if tz.is(utc) || tz.is(c.bson_utc.bind(py)) {
        Ok(None)
    } else {
        Ok(Some(value.call_method1(intern!(py, "astimezone"), (utc,))?))
    }
}

pub(crate) fn int_in_range<'py>(py: Python<'py>, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>) -> Mapped<'py> {
    if value.extract::<i64>().is_ok() {
        Ok(None)
    } else {
        Err(invalid_document(
            py,
            format!(
                "integer at '{}' does not fit in 64 bits (MongoDB's largest integer); store it as a Decimal or a string",
                display_path(&path.render())
            ),
        ))
    }
}

pub(crate) fn binary_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
    let subtype: i64 = if c.binary_private {
        value.getattr(intern!(py, "_Binary__subtype"))?.extract()?
    } else {
        value.getattr(intern!(py, "subtype"))?.extract()?
    };
    if subtype == 4 {
        let raw = value.downcast::<PyBytes>()?.as_bytes();
        if raw.len() == 16 {
            return new_uuid(py, c, raw).map(Some);
        }
    } else if subtype == 0 {
        return Ok(Some(PyBytes::new(py, value.downcast::<PyBytes>()?.as_bytes()).into_any()));
    }
    Ok(None)
}
