//! Model data <-> MongoDB document: one pass each way.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/mapping.py` (same results, same errors).
//!
//! `map_to_doc` turns a `model_dump()` result into the document the driver encodes
//! (`_id`, `_version`, renames, Decimal -> Decimal128, UUID -> Binary subtype 4,
//! datetimes -> aware UTC, date -> UTC midnight, Enum -> value, set/tuple -> list);
//! `map_from_doc` reverses it for `model_validate`. BSON encoding itself stays with
//! the driver's C codec. Paths are built only when an error is raised.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::sync::{GILOnceCell, GILProtected};
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple, PyType};
use pyo3::PyTypeInfo;
use std::cell::RefCell;

use crate::decimal128::{
    bid_of_decimal_text, decimal_text_of_bid, BidError, TextBuf, EXP_MAX, EXP_MIN, INF, MAX_DIGITS,
};
use crate::errors::invalid_document;
use crate::errors::{guarded, ErrorKind};
use crate::ffi::{bare_instance, call_with_one_arg, dict_next, str_len, u64_bits, Slot};
use crate::keys::stored_copy;
use crate::keys::{
    bad_key_error, checked_key, child_path, display_path, index_path, key_problem, known_good_key, remember_good_key,
    too_deep_error, MAX_DEPTH,
};

// --- cached Python objects ----------------------------------------------------------
struct Cache {
    decimal: Py<PyType>,
    /// `create_decimal` of a private context that holds every Decimal128 exactly (34
    /// digits, exponents -6176..6111, no clamping, no traps): the same Decimal as
    /// `Decimal(text)` for finite values, with less argument handling per call.
    exact_decimal: PyObject,
    uuid: Py<PyType>,
    datetime: Py<PyType>,
    date: Py<PyType>,
    enum_: Py<PyType>,
    decimal128: Py<PyType>,
    binary: Py<PyType>,
    base_model: Py<PyType>,
    objectid: Py<PyType>,
    mapping: Py<PyType>,
    seqs: Py<PyTuple>,
    byteslike: Py<PyTuple>,
    passthrough: Py<PyTuple>,
    bytes_new: PyObject,
    utc: PyObject,
    /// `bson.tz_util.utc`, what tz-aware clients attach: already UTC.
    bson_utc: PyObject,
    /// `SafeUUID.unknown` and the `int` / `is_safe` slots, when UUIDs can be built like
    /// uuid.py builds them.
    uuid_slots: Option<(PyObject, Slot, Slot)>,
    /// Decimal128's BID words: the slots `__high` / `__low`, when it keeps them there.
    decimal128_slots: Option<(Slot, Slot)>,
    /// Whether a UUID's Binary is built as `bytes.__new__` plus `_Binary__subtype` (and
    /// its subtype read from there); else through `Binary(raw, 4)` / `.subtype`.
    binary_private: bool,
}

static CACHE: GILOnceCell<Cache> = GILOnceCell::new();

fn class(py: Python<'_>, module: &str, name: &str) -> PyResult<Py<PyType>> {
    Ok(py.import(module)?.getattr(name)?.downcast_into::<PyType>()?.unbind())
}

fn cache(py: Python<'_>) -> PyResult<&'static Cache> {
    CACHE.get_or_try_init(py, || {
        let builtins = py.import("builtins")?;
        let tuple_of = |items: Vec<Py<PyType>>| -> PyResult<Py<PyTuple>> {
            Ok(PyTuple::new(py, items.iter().map(|t| t.bind(py)))?.unbind())
        };
        let passthrough = tuple_of(vec![
            class(py, "bson.objectid", "ObjectId")?,
            class(py, "bson.decimal128", "Decimal128")?,
            class(py, "bson.binary", "Binary")?,
            class(py, "builtins", "bytes")?,
            class(py, "bson.regex", "Regex")?,
            class(py, "re", "Pattern")?,
            class(py, "bson.timestamp", "Timestamp")?,
            class(py, "bson.min_key", "MinKey")?,
            class(py, "bson.max_key", "MaxKey")?,
            class(py, "bson.code", "Code")?,
            class(py, "bson.dbref", "DBRef")?,
            class(py, "bson.int64", "Int64")?,
        ])?;
        let mut cache = Cache {
            decimal: class(py, "decimal", "Decimal")?,
            exact_decimal: {
                let decimal = py.import("decimal")?;
                let settings = PyDict::new(py);
                settings.set_item("prec", MAX_DIGITS as i64)?;
                // IEEE decimal128: adjusted exponents EXP_MIN..EXP_MAX plus the digits
                settings.set_item("Emax", (EXP_MAX + MAX_DIGITS - 1) as i64)?;
                settings.set_item("Emin", (EXP_MIN + MAX_DIGITS - 1) as i64)?;
                settings.set_item("clamp", 0)?;
                settings.set_item("traps", PyList::empty(py))?;
                decimal.getattr("Context")?.call((), Some(&settings))?.getattr("create_decimal")?.unbind()
            },
            uuid: class(py, "uuid", "UUID")?,
            datetime: class(py, "datetime", "datetime")?,
            date: class(py, "datetime", "date")?,
            enum_: class(py, "enum", "Enum")?,
            decimal128: class(py, "bson.decimal128", "Decimal128")?,
            binary: class(py, "bson.binary", "Binary")?,
            base_model: class(py, "pydantic", "BaseModel")?,
            objectid: class(py, "bson.objectid", "ObjectId")?,
            mapping: class(py, "collections.abc", "Mapping")?,
            seqs: tuple_of(vec![
                class(py, "builtins", "list")?,
                class(py, "builtins", "tuple")?,
                class(py, "builtins", "set")?,
                class(py, "builtins", "frozenset")?,
            ])?,
            byteslike: tuple_of(vec![class(py, "builtins", "bytearray")?, class(py, "builtins", "memoryview")?])?,
            passthrough,
            bytes_new: builtins.getattr("bytes")?.getattr("__new__")?.unbind(),
            uuid_slots: {
                let uuid = py.import("uuid")?;
                let cls = uuid.getattr("UUID")?.downcast_into::<PyType>()?;
                match (Slot::of(&cls, "int")?, Slot::of(&cls, "is_safe")?) {
                    (Some(int), Some(is_safe)) => {
                        Some((uuid.getattr("SafeUUID")?.getattr("unknown")?.unbind(), int, is_safe))
                    }
                    _ => None,
                }
            },
            decimal128_slots: {
                let cls = class(py, "bson.decimal128", "Decimal128")?;
                let cls = cls.bind(py);
                match (Slot::of(cls, "_Decimal128__high")?, Slot::of(cls, "_Decimal128__low")?) {
                    (Some(high), Some(low)) => Some((high, low)),
                    _ => None,
                }
            },
            utc: py.import("datetime")?.getattr("timezone")?.getattr("utc")?.unbind(),
            bson_utc: py.import("bson.tz_util")?.getattr("utc")?.unbind(),
            binary_private: true,
        };
        checked_layouts(py, &mut cache);
        Ok(cache)
    })
}

/// Keeps each private-layout shortcut only when it builds exactly what the public
/// constructor builds (checked once, on sample values); otherwise the public constructor
/// is used from then on. A pymongo release that renames `_Binary__subtype` or the
/// Decimal128 / UUID slots therefore costs speed, never correctness.
fn checked_layouts(py: Python<'_>, c: &mut Cache) {
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
}

/// Whether `fast` and `public()` both succeed with equal objects of the same type.
fn same<'py>(
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
fn private_binary<'py>(py: Python<'py>, c: &Cache, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let binary = c.bytes_new.bind(py).call1((c.binary.bind(py), PyBytes::new(py, raw)))?;
    binary.setattr(intern!(py, "_Binary__subtype"), 4)?;
    Ok(binary)
}

fn new_decimal128<'py>(py: Python<'py>, c: &Cache, high: u64, low: u64) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.decimal128.bind(py);
    let Some((high_slot, low_slot)) = &c.decimal128_slots else {
        return cls.call1(((high, low),));
    };
    let obj = bare_instance(py, cls)?;
    high_slot.set(&obj, &high.into_pyobject(py)?.into_any())?;
    low_slot.set(&obj, &low.into_pyobject(py)?.into_any())?;
    Ok(obj)
}

fn new_uuid<'py>(py: Python<'py>, c: &Cache, raw: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let cls = c.uuid.bind(py);
    let Some((unknown, int, is_safe)) = &c.uuid_slots else {
        let kwargs = PyDict::new(py);
        kwargs.set_item(intern!(py, "bytes"), PyBytes::new(py, raw))?;
        return cls.call((), Some(&kwargs));
    };
    let mut be = [0u8; 16];
    be.copy_from_slice(raw);
    let obj = bare_instance(py, cls)?;
    int.set(&obj, &u128::from_be_bytes(be).into_pyobject(py)?.into_any())?;
    is_safe.set(&obj, unknown.bind(py))?;
    Ok(obj)
}

/// Decimal128's BID-word slots, when `value` is exactly a Decimal128 that keeps them.
fn exact_slots<'c>(c: &'c Cache, value: &Bound<'_, PyAny>) -> Option<&'c (Slot, Slot)> {
    let slots = c.decimal128_slots.as_ref()?;
    value.get_type().is(c.decimal128.bind(value.py())).then_some(slots)
}

fn uuid_binary<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
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

fn utc_midnight<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let y = value.getattr(intern!(py, "year"))?;
    let m = value.getattr(intern!(py, "month"))?;
    let d = value.getattr(intern!(py, "day"))?;
    c.datetime.bind(py).call1((y, m, d, 0, 0, 0, 0, c.utc.bind(py)))
}

/// Iterates a dict's items as owned references (`PyDict_Next`, see `ffi::dict_next`).
struct Items<'a, 'py> {
    dict: &'a Bound<'py, PyDict>,
    pos: pyo3::ffi::Py_ssize_t,
}

fn items<'a, 'py>(dict: &'a Bound<'py, PyDict>) -> Items<'a, 'py> {
    Items { dict, pos: 0 }
}

impl<'py> Iterator for Items<'_, 'py> {
    type Item = (Bound<'py, PyAny>, Bound<'py, PyAny>);

    fn next(&mut self) -> Option<Self::Item> {
        dict_next(self.dict, &mut self.pos)
    }
}

/// Exact str, float, bool or None: stored and read as they are, and looking at them runs
/// no Python code.
fn plain(value: &Bound<'_, PyAny>) -> bool {
    value.is_exact_instance_of::<PyString>()
        || value.is_none()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
}

// --- lazy paths ------------------------------------------------------------------------
#[derive(Clone, Copy)]
enum Seg<'a, 'py> {
    Root,
    Key(&'a str),
    Obj(&'a Bound<'py, PyAny>),
    Index(usize),
}

#[derive(Clone, Copy)]
struct Path<'a, 'py> {
    parent: Option<&'a Path<'a, 'py>>,
    seg: Seg<'a, 'py>,
}

impl<'a, 'py> Path<'a, 'py> {
    const ROOT: Path<'static, 'static> = Path { parent: None, seg: Seg::Root };

    fn key(&'a self, key: &'a str) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Key(key) }
    }

    fn obj(&'a self, key: &'a Bound<'py, PyAny>) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Obj(key) }
    }

    fn index(&'a self, index: usize) -> Path<'a, 'py> {
        Path { parent: Some(self), seg: Seg::Index(index) }
    }

    fn render(&self) -> String {
        let parent = self.parent.map(|p| p.render()).unwrap_or_default();
        match self.seg {
            Seg::Root => parent,
            Seg::Key(k) => child_path(&parent, k),
            Seg::Obj(k) => child_path(&parent, &k.str().map(|s| s.to_string()).unwrap_or_default()),
            Seg::Index(i) => index_path(&parent, i),
        }
    }
}

fn too_deep(py: Python<'_>, path: &Path<'_, '_>) -> PyErr {
    too_deep_error(py, &path.render())
}

fn to_decimal128<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
) -> PyResult<Bound<'py, PyAny>> {
    let text = value.str()?;
    let text = text.to_str()?;
    match bid_of_decimal_text(text) {
        Ok((high, low)) => new_decimal128(py, c, high, low),
        Err(BidError::Inexact) => Err(invalid_document(
            py,
            format!(
                "Decimal {text} at '{}' cannot be stored exactly as Decimal128 (at most 34 significant digits, exponent -6176..6111); round it with quantize() or store it as a string",
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

fn from_decimal128<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    let (high, low) = if let Some((high, low)) = exact_slots(c, value) {
        (u64_bits(py, &high.get(value)?)?, u64_bits(py, &low.get(value)?)?)
    } else {
        value.call_method0(intern!(py, "__getstate__"))?.extract::<(u64, u64)>()?
    };
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
static ONE_ARG: GILProtected<RefCell<Option<Py<PyTuple>>>> = GILProtected::new(RefCell::new(None));

// --- shared value rules ----------------------------------------------------------------
// Every conversion returns `None` when the value is kept as it is, so containers whose
// children are all kept are not copied (copy on write; the input is never modified).
type Mapped<'py> = PyResult<Option<Bound<'py, PyAny>>>;

fn utc_datetime<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
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

fn int_in_range<'py>(py: Python<'py>, value: &Bound<'py, PyAny>, path: &Path<'_, 'py>) -> Mapped<'py> {
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

/// Whether a container handed down as `owned` (only its parent, itself ours, refers to
/// it: the caller's promise for the top level) may be changed in place: only when
/// nothing else refers to it, its parent's reference and the walk's own being the only
/// two. A container pydantic's serializer shares with the model, or that appears twice,
/// has more and is copied instead, so a model's own state is never changed.
fn ours(container: &Bound<'_, PyAny>, owned: bool) -> bool {
    owned && container.get_refcnt() <= 2
}

/// A list: copied on the first changed item, or changed in place when it is ours (see
/// [`ours`]); other sequences (tuple, set, ...) always become a new list.
fn map_seq<'py>(
    py: Python<'py>,
    c: &Cache,
    items: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
    rule: ValueRule,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    if let Ok(list) = items.downcast_exact::<PyList>() {
        let owned = ours(list, owned);
        let mut out: Option<Bound<'py, PyList>> = None;
        // the length is read again each time: Python code run for an item may change it
        let mut i = 0;
        while i < list.len() {
            let item = list.get_item(i)?;
            i += 1;
            if plain(&item) {
                continue;
            }
            let i = i - 1;
            if let Some(new) = rule(py, c, &item, &path.index(i), depth + 1, owned)? {
                let target = match &out {
                    Some(o) => o,
                    None if owned => list,
                    None => out.insert(list.get_slice(0, list.len())),
                };
                target.set_item(i, new)?;
            }
        }
        return Ok(out.map(Bound::into_any));
    }
    let out = PyList::empty(py);
    for (i, item) in items.try_iter()?.enumerate() {
        let item = item?;
        let new = rule(py, c, &item, &path.index(i), depth + 1, owned)?;
        out.append(new.unwrap_or(item))?;
    }
    Ok(Some(out.into_any()))
}

type ValueRule = for<'a, 'py> fn(Python<'py>, &Cache, &Bound<'py, PyAny>, &Path<'a, 'py>, usize, bool) -> Mapped<'py>;

// --- model data -> document ------------------------------------------------------------
/// Raises `InvalidDocument` naming the key when `key` cannot be a field name under `parent`.
fn check_key<'py>(py: Python<'py>, key: &Bound<'py, PyAny>, parent: &Path<'_, 'py>) -> PyResult<()> {
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

/// A dict with checked keys: copied on the first changed value (changed in place when it
/// is ours, see [`ours`]: only values of existing keys are replaced, which iteration
/// allows), always copied to a plain dict when `value` is a dict subclass.
fn dict_to_doc<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyDict>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let owned = ours(value, owned);
    let mut out: Option<Bound<'py, PyDict>> =
        if value.is_exact_instance_of::<PyDict>() { None } else { Some(stored_copy(value)?) };
    for (key, child) in items(value) {
        if plain(&child) && key.is_exact_instance_of::<PyString>() {
            check_key(py, &key, path)?;
            continue;
        }
        check_key(py, &key, path)?;
        if let Some(new) = to_doc_value(py, c, &child, &path.obj(&key), depth + 1, owned)? {
            let target = match &out {
                Some(o) => o,
                None if owned => value,
                None => out.insert(value.copy()?),
            };
            target.set_item(&key, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
}

fn unsupported(py: Python<'_>, value: &Bound<'_, PyAny>, path: &Path<'_, '_>) -> PyErr {
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

fn to_doc_value<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyAny>,
    path: &Path<'_, 'py>,
    depth: usize,
    owned: bool,
) -> Mapped<'py> {
    if value.is_exact_instance_of::<PyString>()
        || value.is_exact_instance_of::<PyFloat>()
        || value.is_exact_instance_of::<PyBool>()
        || value.is_none()
    {
        return Ok(None);
    }
    if value.is_exact_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast_exact::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth, owned);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_seq(py, c, value, path, depth, owned, to_doc_value);
    }
    // Exact types first (none of them is an Enum): same results as the cascade below.
    let ty = value.get_type();
    if ty.is(c.decimal.bind(py)) {
        return to_decimal128(py, c, value, path).map(Some);
    }
    if ty.is(c.datetime.bind(py)) {
        return utc_datetime(py, c, value);
    }
    if ty.is(c.uuid.bind(py)) {
        return uuid_binary(py, c, value).map(Some);
    }
    if ty.is(c.date.bind(py)) {
        return utc_midnight(py, c, value).map(Some);
    }
    if ty.is(c.objectid.bind(py))
        || ty.is(c.decimal128.bind(py))
        || ty.is(c.binary.bind(py))
        || value.is_exact_instance_of::<PyBytes>()
    {
        return Ok(None);
    }
    // The rule order of the pure twin.
    if value.is_instance(c.enum_.bind(py))? {
        let inner = value.getattr(intern!(py, "_value_"))?;
        return Ok(Some(
            // the value belongs to the Enum member: never changed in place
            to_doc_value(py, c, &inner, path, depth, false)?.unwrap_or(inner),
        ));
    }
    if value.is_instance(c.decimal.bind(py))? {
        return to_decimal128(py, c, value, path).map(Some);
    }
    if value.is_instance(c.datetime.bind(py))? {
        return utc_datetime(py, c, value);
    }
    if value.is_instance(c.date.bind(py))? {
        return utc_midnight(py, c, value).map(Some);
    }
    if value.is_instance(c.uuid.bind(py))? {
        return uuid_binary(py, c, value).map(Some);
    }
    if value.is_instance_of::<PyBool>() || value.is_instance_of::<PyFloat>() || value.is_instance_of::<PyString>() {
        return Ok(None);
    }
    if value.is_instance_of::<PyInt>() {
        return int_in_range(py, value, path);
    }
    if let Ok(dict) = value.downcast::<PyDict>() {
        return dict_to_doc(py, c, dict, path, depth, owned);
    }
    if value.is_instance(c.seqs.bind(py).as_any())? {
        return map_seq(py, c, value, path, depth, owned, to_doc_value);
    }
    if value.is_instance(c.byteslike.bind(py).as_any())? {
        return Ok(Some(PyBytes::type_object(py).call1((value,))?));
    }
    if value.is_instance(c.passthrough.bind(py).as_any())? {
        return Ok(None);
    }
    if value.is_instance(c.base_model.bind(py))? {
        let dumped = value.call_method0(intern!(py, "model_dump"))?;
        let dict = dumped.downcast::<PyDict>()?;
        return Ok(Some(dict_to_doc(py, c, dict, path, depth, false)?.unwrap_or_else(|| dict.clone().into_any())));
    }
    Err(unsupported(py, value, path))
}

/// Whether `key` is the id field or (when `versioned`) `version`; the length is compared
/// first, so most keys are never decoded.
fn is_reserved_key(key: &Bound<'_, PyString>, id_text: &str, id_len: usize, versioned: bool) -> PyResult<bool> {
    let len = str_len(key);
    if len == id_len && key.to_str()? == id_text {
        return Ok(true);
    }
    Ok(versioned && len == 7 && key.to_str()? == "version")
}

/// Renamed fields (`_id`, `_version`, `field_map` targets) go last, after the fields they
/// replace are removed; a name written twice drops the document with an error.
fn finish_renames<'py>(
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
fn output_dict<'py>(data: &Bound<'py, PyDict>, owned: bool) -> PyResult<Bound<'py, PyDict>> {
    if owned && data.is_exact_instance_of::<PyDict>() {
        Ok(data.clone())
    } else {
        stored_copy(data)
    }
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

// --- document -> model data -------------------------------------------------------------
/// A dict: copied on the first changed value, always copied when a dict subclass.
fn dict_from_doc<'py>(
    py: Python<'py>,
    c: &Cache,
    value: &Bound<'py, PyDict>,
    path: &Path<'_, 'py>,
    depth: usize,
) -> Mapped<'py> {
    if depth >= MAX_DEPTH {
        return Err(too_deep(py, path));
    }
    let mut out: Option<Bound<'py, PyDict>> =
        if value.is_exact_instance_of::<PyDict>() { None } else { Some(stored_copy(value)?) };
    for (key, child) in items(value) {
        if plain(&child) || child.is_exact_instance_of::<PyInt>() {
            continue;
        }
        if let Some(new) = from_doc_value(py, c, &child, &path.obj(&key), depth + 1, false)? {
            let target = match &out {
                Some(o) => o,
                None => out.insert(value.copy()?),
            };
            target.set_item(&key, new)?;
        }
    }
    Ok(out.map(Bound::into_any))
}

fn binary_value<'py>(py: Python<'py>, c: &Cache, value: &Bound<'py, PyAny>) -> Mapped<'py> {
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

/// (`_owned` is part of the rule signature `map_seq` shares: a document being read is
/// the caller's, never changed in place.)
fn from_doc_value<'py>(
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
        return dict_from_doc(py, c, dict, path, depth);
    }
    if value.is_exact_instance_of::<PyList>() {
        return map_seq(py, c, value, path, depth, false, from_doc_value);
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
        return dict_from_doc(py, c, dict, path, depth);
    }
    if value.is_instance_of::<PyList>() || value.is_instance_of::<PyTuple>() {
        return map_seq(py, c, value, path, depth, false, from_doc_value);
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
fn reserved_name<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a str>> {
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

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(map_to_doc, m)?)?;
    m.add_function(wrap_pyfunction!(map_from_doc, m)?)?;
    Ok(())
}
