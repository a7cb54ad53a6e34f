//! The Python objects the native module works with, looked up once: the classes a value
//! is classified by, constructors, and the private-layout shortcuts (each kept only after
//! a check against the public constructor at first use).
use pyo3::exceptions::PyValueError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple, PyType};

use crate::decimal128::{DecimalParts, EXP_MAX, EXP_MIN, MAX_DIGITS};
use crate::ffi::{bare_instance, DateLayout, DecimalLayout, Slot};

pub(crate) struct Cache {
    pub(crate) decimal: Py<PyType>,
    /// `create_decimal` of a private context that holds every Decimal128 exactly (34
    /// digits, exponents -6176..6111, no clamping, no traps): the same Decimal as
    /// `Decimal(text)` for finite values, with less argument handling per call.
    pub(crate) exact_decimal: PyObject,
    pub(crate) uuid: Py<PyType>,
    pub(crate) datetime: Py<PyType>,
    pub(crate) date: Py<PyType>,
    pub(crate) enum_: Py<PyType>,
    /// `enum.EnumType`: a value whose class has exactly this metaclass is an Enum member
    pub(crate) enum_type: Py<PyType>,
    /// `time(0, tzinfo=utc)`: an exact date at UTC midnight is `datetime.combine(date, this)`
    pub(crate) midnight_utc: PyObject,
    /// `datetime.combine`
    pub(crate) combine: PyObject,
    pub(crate) decimal128: Py<PyType>,
    pub(crate) binary: Py<PyType>,
    pub(crate) base_model: Py<PyType>,
    pub(crate) objectid: Py<PyType>,
    pub(crate) mapping: Py<PyType>,
    pub(crate) seqs: Py<PyTuple>,
    pub(crate) byteslike: Py<PyTuple>,
    pub(crate) passthrough: Py<PyTuple>,
    pub(crate) bytes_new: PyObject,
    pub(crate) utc: PyObject,
    /// `bson.tz_util.utc`, what tz-aware clients attach: already UTC.
    pub(crate) bson_utc: PyObject,
    /// `SafeUUID.unknown` and the `int` / `is_safe` slots, when UUIDs can be built like
    /// uuid.py builds them.
    pub(crate) uuid_slots: Option<(PyObject, Slot, Slot)>,
    /// Decimal128's BID words: the slots `__high` / `__low`, when it keeps them there.
    pub(crate) decimal128_slots: Option<(Slot, Slot)>,
    /// Direct access to exact Decimals' sign, coefficient and exponent (the C `decimal`
    /// module's layout, checked at first use); else the text route (`str()` / `create_decimal`).
    pub(crate) decimal_layout: Option<DecimalLayout>,
    /// Exact dates read and UTC midnights built through the datetime C API (checked at
    /// first use against `datetime.combine`); else `combine`.
    pub(crate) date_layout: Option<DateLayout>,
    /// Whether a UUID's Binary is built as `bytes.__new__` plus `_Binary__subtype` (and
    /// its subtype read from there); else through `Binary(raw, 4)` / `.subtype`.
    pub(crate) binary_private: bool,
}

pub(crate) static CACHE: GILOnceCell<Cache> = GILOnceCell::new();

pub(crate) fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py.import(module)?.getattr(name)?.downcast_into::<PyType>()?.unbind())
}

fn tuple_of(py: Python<'_>, items: Vec<Py<PyType>>) -> PyResult<Py<PyTuple>> {
    Ok(PyTuple::new(py, items.iter().map(|t| t.bind(py)))?.unbind())
}

/// The classes whose values a document keeps as they are.
fn passthrough(py: Python<'_>) -> PyResult<Py<PyTuple>> {
    let classes = [
        ("bson.objectid", "ObjectId"),
        ("bson.decimal128", "Decimal128"),
        ("bson.binary", "Binary"),
        ("builtins", "bytes"),
        ("bson.regex", "Regex"),
        ("re", "Pattern"),
        ("bson.timestamp", "Timestamp"),
        ("bson.min_key", "MinKey"),
        ("bson.max_key", "MaxKey"),
        ("bson.code", "Code"),
        ("bson.dbref", "DBRef"),
        ("bson.int64", "Int64"),
    ];
    tuple_of(py, classes.iter().map(|(module, name)| class(py, module, name)).collect::<PyResult<_>>()?)
}

/// `create_decimal` of a context that holds every Decimal128 exactly (IEEE decimal128:
/// adjusted exponents EXP_MIN..EXP_MAX plus the digits; no clamping, no traps).
fn exact_decimal(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let settings = PyDict::new(py);
    settings.set_item("prec", MAX_DIGITS as i64)?;
    settings.set_item("Emax", (EXP_MAX + MAX_DIGITS - 1) as i64)?;
    settings.set_item("Emin", (EXP_MIN + MAX_DIGITS - 1) as i64)?;
    settings.set_item("clamp", 0)?;
    settings.set_item("traps", PyList::empty(py))?;
    Ok(py.import("decimal")?.getattr("Context")?.call((), Some(&settings))?.getattr("create_decimal")?.unbind())
}

/// `datetime.time(0, tzinfo=timezone.utc)`.
fn midnight_utc(py: Python<'_>) -> PyResult<Py<PyAny>> {
    let kwargs = PyDict::new(py);
    kwargs.set_item("tzinfo", py.import("datetime")?.getattr("timezone")?.getattr("utc")?)?;
    Ok(py.import("datetime")?.getattr("time")?.call((0,), Some(&kwargs))?.unbind())
}

/// UUID's `int` and `is_safe` slots (with `SafeUUID.unknown`), when it has them.
fn uuid_slots(py: Python<'_>) -> PyResult<Option<(Py<PyAny>, Slot, Slot)>> {
    let uuid = py.import("uuid")?;
    let cls = uuid.getattr("UUID")?.downcast_into::<PyType>()?;
    Ok(match (Slot::of(&cls, "int")?, Slot::of(&cls, "is_safe")?) {
        (Some(int), Some(is_safe)) => Some((uuid.getattr("SafeUUID")?.getattr("unknown")?.unbind(), int, is_safe)),
        _ => None,
    })
}

/// Decimal128's private BID-word slots, when it has them.
fn decimal128_slots(py: Python<'_>) -> PyResult<Option<(Slot, Slot)>> {
    let cls = class(py, "bson.decimal128", "Decimal128")?;
    let cls = cls.bind(py);
    Ok(match (Slot::of(cls, "_Decimal128__high")?, Slot::of(cls, "_Decimal128__low")?) {
        (Some(high), Some(low)) => Some((high, low)),
        _ => None,
    })
}

pub(crate) fn cache(py: Python<'_>) -> PyResult<&'static Cache> {
    CACHE.get_or_try_init(py, || {
        let builtin = |name: &str| class(py, "builtins", name);
        let mut cache = Cache {
            decimal: class(py, "decimal", "Decimal")?,
            exact_decimal: exact_decimal(py)?,
            uuid: class(py, "uuid", "UUID")?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            enum_: class(py, "enum", "Enum")?,
            enum_type: class(py, "enum", "EnumMeta")?,
            midnight_utc: midnight_utc(py)?,
            combine: py.import("datetime")?.getattr("datetime")?.getattr("combine")?.unbind(),
            decimal128: class(py, "bson.decimal128", "Decimal128")?,
            binary: class(py, "bson.binary", "Binary")?,
            base_model: class(py, "pydantic", "BaseModel")?,
            objectid: class(py, "bson.objectid", "ObjectId")?,
            mapping: class(py, "collections.abc", "Mapping")?,
            seqs: tuple_of(py, vec![builtin("list")?, builtin("tuple")?, builtin("set")?, builtin("frozenset")?])?,
            byteslike: tuple_of(py, vec![builtin("bytearray")?, builtin("memoryview")?])?,
            passthrough: passthrough(py)?,
            bytes_new: builtin("bytes")?.bind(py).getattr("__new__")?.unbind(),
            uuid_slots: uuid_slots(py)?,
            decimal128_slots: decimal128_slots(py)?,
            utc: py.import("datetime")?.getattr("timezone")?.getattr("utc")?.unbind(),
            bson_utc: py.import("bson.tz_util")?.getattr("utc")?.unbind(),
            binary_private: true,
            decimal_layout: None,
            date_layout: None,
        };
        checked_layouts(py, &mut cache);
        Ok(cache)
    })
}

/// Keeps each private-layout shortcut only when it builds exactly what the public
/// constructor builds (checked once, on sample values); otherwise the public constructor
/// is used from then on. A pymongo release that renames `_Binary__subtype` or the
/// Decimal128 / UUID slots therefore costs speed, never correctness.
pub(crate) fn checked_layouts(py: Python<'_>, c: &mut Cache) {
    let sample: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let raw = sample.to_be_bytes();
    if c.decimal128_slots.is_some()
        && !same(py, new_decimal128(py, c, 0x3040_0000_0000_0000, 15), || c.decimal128.bind(py).call1(("15",)))
    {
        c.decimal128_slots = None;
    }
    if c.uuid_slots.is_some() {
        let public = || {
            let kwargs = PyDict::new(py);
            kwargs.set_item("bytes", PyBytes::new(py, &raw))?;
            c.uuid.bind(py).call((), Some(&kwargs))
        };
        if !same(py, new_uuid(py, c, &raw), public) {
            c.uuid_slots = None;
        }
    }
    let fast = private_binary(py, c, &raw).and_then(|b| {
        let subtype: i64 = b.getattr("subtype")?.extract()?;
        Ok((subtype == 4).then_some(b))
    });
    let public = || c.binary.bind(py).call1((PyBytes::new(py, &raw), 4));
    c.binary_private = match fast {
        Ok(Some(b)) => same(py, Ok(b), public),
        _ => false,
    };
    c.decimal_layout = checked_decimal_layout(py, c).ok().flatten();
    c.date_layout = checked_date_layout(py, c).ok().flatten();
}

/// The C `decimal` layout, when reading sample Decimals through it gives their known parts
/// and Decimals built through it equal the ones `create_decimal` parses (sign, digits,
/// exponent, text and hash).
fn checked_decimal_layout(py: Python<'_>, c: &Cache) -> PyResult<Option<DecimalLayout>> {
    let parts = |negative: bool, coefficient: u128, exponent: i64| DecimalParts { negative, coefficient, exponent };
    let known = [
        ("19.99", parts(false, 1999, -2)),
        ("-0.005", parts(true, 5, -3)),
        ("-0E-3", parts(true, 0, -3)),
        ("1E+30", parts(false, 1, 30)),
        ("12345678901234567890123", parts(false, 12_345_678_901_234_567_890_123, 0)),
        (
            "-9999999999999999999999999999999999E-6176",
            parts(true, 9_999_999_999_999_999_999_999_999_999_999_999, -6176),
        ),
    ];
    let cls = c.decimal.bind(py);
    let mut samples = Vec::with_capacity(known.len());
    for (text, expected) in known {
        samples.push((cls.call1((text,))?, expected));
    }
    let Some(layout) = DecimalLayout::checked(cls, &samples)? else {
        return Ok(None);
    };
    for (text, expected) in known {
        let built = layout.build(cls, expected)?;
        let parsed = c.exact_decimal.bind(py).call1((text,))?;
        let tuple = |d: &Bound<'_, PyAny>| d.call_method0("as_tuple").and_then(|t| t.repr()).map(|r| r.to_string());
        let hash = |d: &Bound<'_, PyAny>| d.hash();
        if !same(py, Ok(built.clone()), || Ok(parsed.clone()))
            || tuple(&built)? != tuple(&parsed)?
            || hash(&built)? != hash(&parsed)?
            || layout.parts(&built) != Some(expected)
        {
            return Ok(None);
        }
    }
    Ok(Some(layout))
}

/// The datetime C API, when sample dates read back as their fields and the UTC midnights
/// built through it equal `datetime.combine`'s.
fn checked_date_layout(py: Python<'_>, c: &Cache) -> PyResult<Option<DateLayout>> {
    let known = [(2024, 6, 1), (1, 1, 1), (9999, 12, 31), (2000, 2, 29)];
    let (date, datetime) = (c.date.bind(py), c.datetime.bind(py));
    let mut samples = Vec::with_capacity(known.len());
    for ymd in known {
        samples.push((date.call1(ymd)?, ymd));
    }
    let capsule = py.import("datetime")?.getattr("datetime_CAPI")?;
    let Some(layout) = DateLayout::checked(&capsule, date, datetime, &samples)? else {
        return Ok(None);
    };
    for (sample, ymd) in &samples {
        let built = layout.midnight(datetime, *ymd, c.utc.bind(py));
        let combined = || c.combine.bind(py).call1((sample, c.midnight_utc.bind(py)));
        if !same(py, built, combined) {
            return Ok(None);
        }
    }
    Ok(Some(layout))
}

/// Whether `fast` and `public()` both succeed with equal objects of the same type.
pub(crate) fn same<'py>(
    _py: Python<'py>,
    fast: PyResult<Bound<'py, PyAny>>,
    public: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> bool {
    let (Ok(fast), Ok(public)) = (fast, public()) else {
        return false;
    };
    fast.get_type().is(&public.get_type())
        && fast.eq(&public).unwrap_or(false)
        && fast.str().ok().map(|s| s.to_string()) == public.str().ok().map(|s| s.to_string())
}

/// `Binary(raw, 4)` built as `bytes.__new__(Binary, raw)` plus its private subtype field.
pub(crate) fn private_binary<'py>(py: Python<'py>, c: &Cache, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let binary = c.bytes_new.bind(py).call1((c.binary.bind(py), PyBytes::new(py, raw)))?;
    binary.setattr(intern!(py, "_Binary__subtype"), 4)?;
    Ok(binary)
}

pub(crate) fn new_decimal128<'py>(py: Python<'py>, c: &Cache, high: u64, low: u64) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.decimal128.bind(py);
    let Some((high_slot, low_slot)) = &c.decimal128_slots else {
        return cls.call1(((high, low),));
    };
    let obj = bare_instance(py, cls)?;
    high_slot.set(&obj, &high.into_pyobject(py)?.into_any())?;
    low_slot.set(&obj, &low.into_pyobject(py)?.into_any())?;
    Ok(obj)
}

pub(crate) fn new_uuid<'py>(py: Python<'py>, c: &Cache, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.uuid.bind(py);
    let Some((unknown, int, is_safe)) = &c.uuid_slots else {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "bytes"), PyBytes::new(py, raw))?;
        return cls.call((), Some(&kwargs));
    };
    let Ok(be) = <[u8; 16]>::try_from(raw) else {
        return Err(PyValueError::new_err(format!("a UUID has 16 bytes, got {}", raw.len())));
    };
    let obj = bare_instance(py, cls)?;
    int.set(&obj, &u128::from_be_bytes(be).into_pyobject(py)?.into_any())?;
    is_safe.set(&obj, unknown.bind(py))?;
    Ok(obj)
}

/// Decimal128's BID-word slots, when `value` is exactly a Decimal128 that keeps them.
pub(crate) fn exact_slots<'c>(c: &'c Cache, value: &Bound<'_, PyAny>) -> Option<&'c (Slot, Slot)> {
    let slots = c.decimal128_slots.as_ref()?;
    value.get_type().is(c.decimal128.bind(value.py())).then_some(slots)
}

/// What a value is to the write pass, decided once per value and then matched: exact
/// types first (the common case, one pointer comparison each), then the pure twin's
/// `isinstance` order, so subclasses land where the pure backend puts them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum ValueType {
    /// stored as it is (str, float, bool, None, bytes, BSON types)
    Kept,
    Int,
    Dict,
    /// list, tuple, set, frozenset (a list may be changed in place, others become lists)
    Seq,
    Decimal,
    DateTime,
    Date,
    Uuid,
    Enum,
    BytesLike,
    Model,
    Unsupported,
}

fn exact_type(py: Python<'_>, c: &Cache, value: &Bound<'_, PyAny>) -> Option<ValueType> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Some(ValueType::Kept);
    }
    if value.is_exact_instance_of::<PyInt>() {
        return Some(ValueType::Int);
    }
    if value.is_exact_instance_of::<PyDict>() {
        return Some(ValueType::Dict);
    }
    if value.is_exact_instance_of::<PyList>()
        || value.is_exact_instance_of::<PyTuple>()
        || value.is_exact_instance_of::<PySet>()
        || value.is_exact_instance_of::<PyFrozenSet>()
    {
        return Some(ValueType::Seq);
    }
    // none of these is an Enum, so deciding them first agrees with the cascade below
    let ty = value.get_type();
    Some(if ty.is(c.decimal.bind(py)) {
        ValueType::Decimal
    } else if ty.is(c.datetime.bind(py)) {
        ValueType::DateTime
    } else if ty.is(c.uuid.bind(py)) {
        ValueType::Uuid
    } else if ty.is(c.date.bind(py)) {
        ValueType::Date
    } else if ty.is(c.objectid.bind(py))
        || ty.is(c.decimal128.bind(py))
        || ty.is(c.binary.bind(py))
        || value.is_exact_instance_of::<PyBytes>()
    {
        ValueType::Kept
    } else if ty.get_type().is(c.enum_type.bind(py)) {
        ValueType::Enum
    } else {
        return None;
    })
}

/// The write pass's [`ValueType`] of `value`.
pub(crate) fn classify(py: Python<'_>, c: &Cache, value: &Bound<'_, PyAny>) -> PyResult<ValueType> {
    if let Some(found) = exact_type(py, c, value) {
        return Ok(found);
    }
    let ordered: [(&Bound<'_, PyAny>, ValueType); 5] = [
        (c.enum_.bind(py).as_any(), ValueType::Enum),
        (c.decimal.bind(py).as_any(), ValueType::Decimal),
        (c.datetime.bind(py).as_any(), ValueType::DateTime),
        (c.date.bind(py).as_any(), ValueType::Date),
        (c.uuid.bind(py).as_any(), ValueType::Uuid),
    ];
    for (cls, found) in ordered {
        if value.is_instance(cls)? {
            return Ok(found);
        }
    }
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyString>() {
        return Ok(ValueType::Kept);
    }
    if value.is_instance_of::<PyInt>() {
        return Ok(ValueType::Int);
    }
    if value.is_instance_of::<PyDict>() {
        return Ok(ValueType::Dict);
    }
    let ordered: [(&Bound<'_, PyAny>, ValueType); 4] = [
        (c.seqs.bind(py).as_any(), ValueType::Seq),
        (c.byteslike.bind(py).as_any(), ValueType::BytesLike),
        (c.passthrough.bind(py).as_any(), ValueType::Kept),
        (c.base_model.bind(py).as_any(), ValueType::Model),
    ];
    for (cls, found) in ordered {
        if value.is_instance(cls)? {
            return Ok(found);
        }
    }
    Ok(ValueType::Unsupported)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_checked_c_layouts_are_recognised_on_this_interpreter() {
        pyo3::prepare_freethreaded_python();
        Python::with_gil(|py| {
            let c = cache(py).expect("the module's classes import");
            assert!(c.decimal_layout.is_some(), "Decimal layout refused: the pass would take the text route");
            assert!(c.date_layout.is_some(), "datetime C API refused: dates would go through datetime.combine");
            let d = c.decimal.bind(py).call1(("-12.50",)).expect("Decimal");
            let layout = c.decimal_layout.as_ref().expect("checked above");
            let parts = layout.parts(&d).expect("finite");
            assert_eq!(parts, DecimalParts { negative: true, coefficient: 1250, exponent: -2 });
            let built = layout.build(c.decimal.bind(py), parts).expect("built");
            assert!(built.eq(&d).expect("comparable"));
            assert_eq!(built.str().expect("str").to_str().expect("text"), "-12.50");
        });
    }
}
