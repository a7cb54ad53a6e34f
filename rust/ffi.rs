//! Every `unsafe` block of the crate, each with the invariant it relies on written above
//! it. Callers get safe functions: nothing here hands out a borrowed pointer.
//!
//! On reference counts: the mapping pass changes a container in place only when its
//! reference count shows that nothing but its parent and the pass refer to it (see
//! `mapping::ours`). That is sound here because the module is built for the stable ABI
//! (abi3) of GIL builds: the GIL is held for the whole pass, so no other thread can take a
//! new reference between the count being read and the container being changed. A
//! free-threaded build (PEP 703) would break this (another thread may incref at any
//! time, and counts are split between owner and other threads); abi3 modules cannot be
//! loaded there, and a port would have to copy instead.
use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void};

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple, PyType};

use crate::decimal128::{decimal_digits, DecimalParts};

/// A `__slots__` member of a class, read and written through its descriptor's own
/// functions: what `getattr` / `object.__setattr__` end up calling for it, without the
/// attribute lookup on the way (only used on exact instances of the class).
pub struct Slot {
    descr: PyObject,
    get: ffi::descrgetfunc,
    set: ffi::descrsetfunc,
}

impl Slot {
    /// The slot `name` of `cls`, if `cls` itself defines it as a member descriptor.
    pub fn of(cls: &Bound<'_, PyType>, name: &str) -> PyResult<Option<Slot>> {
        let py = cls.py();
        let Ok(descr) = cls.getattr("__dict__")?.get_item(name) else {
            return Ok(None);
        };
        let member = py.import("types")?.getattr("MemberDescriptorType")?;
        if !descr.get_type().is(&member) {
            return Ok(None);
        }
        let descr_type = descr.get_type();
        let ty = descr_type.as_ptr().cast::<ffi::PyTypeObject>();
        // SAFETY: `ty` is a live type object (held by `descr_type`); PyType_GetSlot only
        // reads the documented tp_descr_get / tp_descr_set entries (valid on static types
        // since 3.10) and returns NULL when a slot is absent.
        let (get, set) =
            unsafe { (ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_get), ffi::PyType_GetSlot(ty, ffi::Py_tp_descr_set)) };
        if get.is_null() || set.is_null() {
            return Ok(None);
        }
        // SAFETY: both pointers are non-null and come from the tp_descr_get / tp_descr_set
        // slots, whose C signatures are exactly descrgetfunc / descrsetfunc.
        let (get, set) = unsafe {
            (
                std::mem::transmute::<*mut c_void, ffi::descrgetfunc>(get),
                std::mem::transmute::<*mut c_void, ffi::descrsetfunc>(set),
            )
        };
        Ok(Some(Slot { descr: descr.unbind(), get, set }))
    }

    /// `obj.<slot>` (raises AttributeError when unset, as getattr would).
    pub fn get<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let py = obj.py();
        let ty = obj.get_type();
        // SAFETY: the descriptor, the instance and its type are live for the call (held by
        // `self`, `obj` and `ty`); the getter returns a new reference or NULL with an error
        // set, which from_owned_ptr_or_err turns into Err.
        unsafe { Bound::from_owned_ptr_or_err(py, (self.get)(self.descr.as_ptr(), obj.as_ptr(), ty.as_ptr())) }
    }

    /// `object.__setattr__(obj, <slot>, value)`.
    pub fn set(&self, obj: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
        // SAFETY: descriptor, instance and value are live for the call; the member setter
        // takes its own reference to `value` and returns -1 with an error set on failure.
        let rc = unsafe { (self.set)(self.descr.as_ptr(), obj.as_ptr(), value.as_ptr()) };
        if rc < 0 {
            Err(PyErr::fetch(obj.py()))
        } else {
            Ok(())
        }
    }
}

/// A new, uninitialised instance of `cls` (`object.__new__(cls)`): only used for classes
/// whose every field is then set through their slots (checked once at import, see
/// `types.rs`).
pub fn bare_instance<'py>(py: Python<'py>, cls: &Bound<'py, PyType>) -> PyResult<Bound<'py, PyAny>> {
    let args = PyTuple::empty(py);
    // SAFETY: `cls` is a live type object and `args` a live tuple for the call;
    // PyType_GenericNew returns a new reference or NULL with an error set.
    unsafe {
        let obj = ffi::PyType_GenericNew(cls.as_ptr().cast::<ffi::PyTypeObject>(), args.as_ptr(), std::ptr::null_mut());
        Bound::from_owned_ptr_or_err(py, obj)
    }
}

/// The low 64 bits of a Python int (Decimal128 keeps its BID words as ints).
pub fn u64_bits(py: Python<'_>, value: &Bound<'_, PyAny>) -> PyResult<u64> {
    // SAFETY: `value` is live for the call; PyLong_AsUnsignedLongLongMask accepts any
    // object and reports a failure as (unsigned long long)-1 with an error set.
    let bits = unsafe { ffi::PyLong_AsUnsignedLongLongMask(value.as_ptr()) };
    if bits == u64::MAX {
        if let Some(err) = PyErr::take(py) {
            return Err(err);
        }
    }
    Ok(bits)
}

/// The length of a str in code points (no Python code runs, no error is possible).
pub fn str_len(text: &Bound<'_, PyString>) -> usize {
    // SAFETY: `text` is a live str object (the type guarantees it), for which
    // PyUnicode_GetLength cannot fail; a negative result is mapped to 0 all the same.
    let len = unsafe { ffi::PyUnicode_GetLength(text.as_ptr()) };
    usize::try_from(len).unwrap_or(0)
}

/// The next `(key, value)` of `dict` from position `pos`, as owned references, or None at
/// the end. `PyDict_Next` stays within the table even if the dict changed meanwhile.
pub fn dict_next<'py>(
    dict: &Bound<'py, PyDict>,
    pos: &mut ffi::Py_ssize_t,
) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let mut key: *mut ffi::PyObject = std::ptr::null_mut();
    let mut value: *mut ffi::PyObject = std::ptr::null_mut();
    let py = dict.py();
    // SAFETY: `dict` is a live dict; PyDict_Next writes borrowed pointers to a live key and
    // value, which are turned into owned references at once, before any Python code can
    // run (and so before anything could remove them from the dict).
    unsafe {
        if ffi::PyDict_Next(dict.as_ptr(), pos, &mut key, &mut value) == 0 {
            return None;
        }
        Some((Bound::from_borrowed_ptr(py, key), Bound::from_borrowed_ptr(py, value)))
    }
}

/// `function(arg)` with an args tuple kept in `cell` between calls: `function` (a C
/// function that only borrows its arguments) leaves the tuple with its one reference, so
/// the next call can reuse it. The tuple is taken out of the cell for the call, so a call
/// made meanwhile (re-entrant) builds its own.
pub fn call_with_one_arg<'py>(
    cell: &RefCell<Option<Py<PyTuple>>>,
    function: &Bound<'py, PyAny>,
    arg: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let py = function.py();
    let reused = cell.borrow_mut().take();
    let args = match reused {
        Some(args) if args.get_refcnt(py) == 1 => args,
        _ => PyTuple::new(py, [py.None()])?.unbind(),
    };
    // SAFETY: `args` is a live 1-tuple that nothing but this function refers to (count 1,
    // checked above, or just made), so changing its item is invisible to any other code;
    // PyTuple_SetItem steals the reference to `arg` and releases the old item.
    if unsafe { ffi::PyTuple_SetItem(args.as_ptr(), 0, arg.into_ptr()) } < 0 {
        return Err(PyErr::fetch(py));
    }
    // SAFETY: live callable and args tuple for the call; PyObject_Call returns a new
    // reference or NULL with an error set.
    let result = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyObject_Call(function.as_ptr(), args.as_ptr(), std::ptr::null_mut()))
    };
    *cell.borrow_mut() = Some(args);
    result
}

/// `list(items)` for any iterable, through `PySequence_List` (no Python-level call).
pub fn list_of<'py>(items: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
    // SAFETY: `items` is live for the call; PySequence_List returns a new reference to a
    // new list or NULL with an error set.
    let list = unsafe { Bound::from_owned_ptr_or_err(items.py(), ffi::PySequence_List(items.as_ptr()))? };
    Ok(list.downcast_into::<PyList>()?)
}

/// The start of `PyDateTime_CAPI` (CPython's `datetime.h`; later fields are only ever
/// appended): the classes, the UTC singleton and the two constructors.
#[repr(C)]
struct DateTimeCapi {
    date_type: *mut ffi::PyTypeObject,
    datetime_type: *mut ffi::PyTypeObject,
    time_type: *mut ffi::PyTypeObject,
    delta_type: *mut ffi::PyTypeObject,
    tzinfo_type: *mut ffi::PyTypeObject,
    timezone_utc: *mut ffi::PyObject,
    date_from_date: *mut c_void,
    datetime_from_date_and_time: NewDateTime,
}

type NewDateTime = unsafe extern "C" fn(
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *mut ffi::PyObject,
    *mut ffi::PyTypeObject,
) -> *mut ffi::PyObject;

/// `PyDateTime_Date` (`datetime.h`): year (big-endian), month and day in `data`.
#[repr(C)]
struct PyDateTimeDate {
    ob_base: ffi::PyObject,
    hashcode: isize,
    hastzinfo: c_char,
    data: [u8; 4],
}

/// A date's `(year, month, day)`.
pub type Ymd = (i32, i32, i32);

/// Exact `datetime.date` values read, and UTC datetimes built, through the datetime
/// module's C API instead of `datetime.combine` (argument parsing per call). Only built
/// by [`DateLayout::checked`].
pub struct DateLayout {
    new_datetime: NewDateTime,
    /// Addresses of the checked date and datetime classes (module statics, never freed):
    /// every read and build compares against them, so no caller can pass another type.
    date_type: usize,
    datetime_type: usize,
}

impl DateLayout {
    /// The layout, when the module's C API capsule names exactly `date_cls` and
    /// `datetime_cls`, dates are [`PyDateTimeDate`]s and each sample date reads back as its
    /// `(year, month, day)`. Else None (the pass keeps `datetime.combine`).
    pub fn checked(
        capsule: &Bound<'_, PyAny>,
        date_cls: &Bound<'_, PyType>,
        datetime_cls: &Bound<'_, PyType>,
        samples: &[(Bound<'_, PyAny>, Ymd)],
    ) -> PyResult<Option<Self>> {
        let basicsize: usize = date_cls.getattr("__basicsize__")?.extract()?;
        // SAFETY: PyCapsule_IsValid accepts any object and only compares the name.
        if basicsize != std::mem::size_of::<PyDateTimeDate>()
            || unsafe { ffi::PyCapsule_IsValid(capsule.as_ptr(), c"datetime.datetime_CAPI".as_ptr()) } != 1
        {
            return Ok(None);
        }
        // SAFETY: a valid capsule of that name holds a pointer to the module's static
        // PyDateTime_CAPI, which lives as long as the datetime module (never unloaded);
        // only its first fields, present in every CPython 3, are read.
        let (date_type, datetime_type, new_datetime) = unsafe {
            let capi =
                ffi::PyCapsule_GetPointer(capsule.as_ptr(), c"datetime.datetime_CAPI".as_ptr()).cast::<DateTimeCapi>();
            if capi.is_null() {
                return Err(PyErr::fetch(capsule.py()));
            }
            ((*capi).date_type, (*capi).datetime_type, (*capi).datetime_from_date_and_time)
        };
        if date_type.cast::<ffi::PyObject>() != date_cls.as_ptr()
            || datetime_type.cast::<ffi::PyObject>() != datetime_cls.as_ptr()
        {
            return Ok(None);
        }
        let layout = DateLayout {
            new_datetime,
            date_type: date_cls.as_ptr() as usize,
            datetime_type: datetime_cls.as_ptr() as usize,
        };
        for (sample, expected) in samples {
            if layout.ymd(sample) != Some(*expected) {
                return Ok(None);
            }
        }
        Ok(Some(layout))
    }

    /// `(year, month, day)` of an exact `datetime.date` (the class the layout was checked
    /// on); None for any other object.
    pub fn ymd(&self, date: &Bound<'_, PyAny>) -> Option<Ymd> {
        if date.get_type().as_ptr() as usize != self.date_type {
            return None;
        }
        let obj = date.as_ptr().cast::<PyDateTimeDate>();
        // SAFETY: `date` is an exact instance of the date class (compared just above) whose
        // size was checked to be that of PyDateTimeDate, so `data` is inside the object.
        let data = unsafe { (*obj).data };
        Some((i32::from(data[0]) << 8 | i32::from(data[1]), i32::from(data[2]), i32::from(data[3])))
    }

    /// `datetime(year, month, day, tzinfo=tz)` of the exact `datetime_cls` the layout was
    /// checked with.
    pub fn midnight<'py>(
        &self,
        datetime_cls: &Bound<'py, PyType>,
        ymd: Ymd,
        tz: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.datetime(datetime_cls, ymd, (0, 0, 0, 0), tz)
    }

    /// `datetime(year, month, day, hour, minute, second, microsecond, tzinfo=tz)` of the
    /// exact `datetime_cls` the layout was checked with.
    pub fn datetime<'py>(
        &self,
        datetime_cls: &Bound<'py, PyType>,
        (year, month, day): Ymd,
        (hour, minute, second, micro): (i32, i32, i32, i32),
        tz: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        if datetime_cls.as_ptr() as usize != self.datetime_type {
            return Err(PyTypeError::new_err("the datetime layout builds only the datetime class it was checked on"));
        }
        // SAFETY: `datetime_cls` is the class the capsule's constructor was checked with
        // (compared just above); the constructor validates its other arguments and returns
        // a new reference or NULL with an error set; `tz` and the class are live.
        unsafe {
            let obj = (self.new_datetime)(
                year,
                month,
                day,
                hour,
                minute,
                second,
                micro,
                tz.as_ptr(),
                datetime_cls.as_ptr().cast::<ffi::PyTypeObject>(),
            );
            Bound::from_owned_ptr_or_err(datetime_cls.py(), obj)
        }
    }
}

/// libmpdec's `mpd_t` as CPython's C `decimal` module embeds it in every `Decimal`
/// (64-bit configuration: words of 19 decimal digits).
#[repr(C)]
struct MpdT {
    flags: u8,
    exp: isize,
    digits: isize,
    len: isize,
    alloc: isize,
    data: *mut u64,
}

/// `PyDecObject`: the object header, the cached hash, the number and its inline words.
#[repr(C)]
struct PyDecObject {
    ob_base: ffi::PyObject,
    hash: isize,
    dec: MpdT,
    inline: [u64; DEC_INLINE_WORDS],
}

const DEC_INLINE_WORDS: usize = 4;
const MPD_NEG: u8 = 1;
const MPD_SPECIAL: u8 = 2 | 4 | 8;
const MPD_STATIC: u8 = 16;
const MPD_STATIC_DATA: u8 = 32;
/// One word of an `mpd_t` coefficient holds 19 decimal digits.
pub const MPD_RADIX: u64 = 10_000_000_000_000_000_000;

/// Direct access to the numbers inside exact `decimal.Decimal` objects, without a text
/// round trip. Only built by [`DecimalLayout::checked`], which makes sure the objects
/// are laid out as [`PyDecObject`] says before anything is read or written.
pub struct DecimalLayout {
    alloc: ffi::allocfunc,
    /// Address of the checked class (`decimal.Decimal`, a module static kept alive by the
    /// cache): every read and build compares against it, so no caller can pass another type.
    decimal_type: usize,
}

impl DecimalLayout {
    /// The layout of `cls` (which must be `decimal.Decimal`), when its instances are
    /// exactly [`PyDecObject`]s: same size, no per-item part, and each of `samples`
    /// (fresh `Decimal(text)` objects with the parts expected of them) read back as
    /// expected, its words held inline as a fresh Decimal's are. Else None: the pass
    /// then goes through `str()` and `create_decimal` as before.
    pub fn checked(cls: &Bound<'_, PyType>, samples: &[(Bound<'_, PyAny>, DecimalParts)]) -> PyResult<Option<Self>> {
        let basicsize: usize = cls.getattr("__basicsize__")?.extract()?;
        let itemsize: usize = cls.getattr("__itemsize__")?.extract()?;
        if basicsize != std::mem::size_of::<PyDecObject>() || itemsize != 0 || std::mem::size_of::<usize>() != 8 {
            return Ok(None);
        }
        for (sample, expected) in samples {
            if !sample.get_type().is(cls) {
                return Ok(None);
            }
            let obj = sample.as_ptr().cast::<PyDecObject>();
            // SAFETY: `sample` is a live instance of `cls`, whose instances are exactly
            // size_of::<PyDecObject>() bytes (checked above), so every field read here is
            // inside the object; nothing is dereferenced through `data` yet.
            let (flags, alloc, data, inline) = unsafe {
                (
                    (*obj).dec.flags,
                    (*obj).dec.alloc,
                    (*obj).dec.data,
                    std::ptr::addr_of_mut!((*obj).inline).cast::<u64>(),
                )
            };
            // a fresh Decimal's words are its own inline array: if `data` points there,
            // the fields really are where this layout says
            if data != inline
                || alloc != DEC_INLINE_WORDS as isize
                || flags & (MPD_STATIC | MPD_STATIC_DATA) != MPD_STATIC | MPD_STATIC_DATA
            {
                return Ok(None);
            }
            if decimal_parts_unchecked(sample) != Some(*expected) {
                return Ok(None);
            }
        }
        let ty = cls.as_ptr().cast::<ffi::PyTypeObject>();
        // SAFETY: `ty` is a live type object; PyType_GetSlot reads its tp_alloc entry
        // (valid on static types since 3.10), NULL when absent.
        let alloc = unsafe { ffi::PyType_GetSlot(ty, ffi::Py_tp_alloc) };
        if alloc.is_null() {
            return Ok(None);
        }
        // SAFETY: non-null, from the tp_alloc slot, whose C signature is allocfunc.
        let alloc = unsafe { std::mem::transmute::<*mut c_void, ffi::allocfunc>(alloc) };
        Ok(Some(DecimalLayout { alloc, decimal_type: cls.as_ptr() as usize }))
    }

    /// The parts of `value` (an exact `decimal.Decimal`), or None for NaN / Infinity and
    /// coefficients of more than two words (those take the text route).
    pub fn parts(&self, value: &Bound<'_, PyAny>) -> Option<DecimalParts> {
        if value.get_type().as_ptr() as usize != self.decimal_type {
            return None;
        }
        decimal_parts_unchecked(value)
    }

    /// A new exact `decimal.Decimal` (`cls`, the class this layout was checked on) of
    /// `parts`, whose coefficient must be below 10^38; equal in every respect to the
    /// one `Decimal` parses from the same text.
    pub fn build<'py>(&self, cls: &Bound<'py, PyType>, parts: DecimalParts) -> PyResult<Bound<'py, PyAny>> {
        if cls.as_ptr() as usize != self.decimal_type {
            return Err(PyTypeError::new_err("the Decimal layout builds only the class it was checked on"));
        }
        let py = cls.py();
        let low = (parts.coefficient % u128::from(MPD_RADIX)) as u64;
        let high = parts.coefficient / u128::from(MPD_RADIX);
        let high = match u64::try_from(high) {
            Ok(high) if high < MPD_RADIX => high,
            _ => return Err(pyo3::exceptions::PyOverflowError::new_err("coefficient of more than two words")),
        };
        let digits = decimal_digits(parts.coefficient) as isize;
        // SAFETY: tp_alloc of `cls` (checked to be laid out as PyDecObject) returns a new,
        // zero-filled instance of the full size or NULL with an error set. Its fields are
        // then written as CPython's own constructor writes them for a fresh Decimal (cached
        // hash unknown, static object with inline words, normalised coefficient: `len`
        // counts up to the highest non-zero word, at least one), before any Python code
        // can see the object.
        unsafe {
            let obj = (self.alloc)(cls.as_ptr().cast::<ffi::PyTypeObject>(), 0);
            if obj.is_null() {
                return Err(PyErr::fetch(py));
            }
            let dec = obj.cast::<PyDecObject>();
            (*dec).hash = -1;
            (*dec).inline[0] = low;
            (*dec).inline[1] = high;
            (*dec).dec = MpdT {
                flags: MPD_STATIC | MPD_STATIC_DATA | if parts.negative { MPD_NEG } else { 0 },
                exp: parts.exponent as isize,
                digits,
                len: if high == 0 { 1 } else { 2 },
                alloc: DEC_INLINE_WORDS as isize,
                data: std::ptr::addr_of_mut!((*dec).inline).cast::<u64>(),
            };
            Ok(Bound::from_owned_ptr(py, obj))
        }
    }
}

/// The parts of a `PyDecObject` (see [`DecimalLayout::parts`]); only called on objects
/// the layout check vouched for.
fn decimal_parts_unchecked(value: &Bound<'_, PyAny>) -> Option<DecimalParts> {
    let obj = value.as_ptr().cast::<PyDecObject>();
    // SAFETY: callers pass only exact instances of the Decimal class whose layout was
    // checked to be PyDecObject (or, inside the check, samples whose size was checked), so
    // the fields are inside the object; `data` holds `len` words by libmpdec's invariant,
    // and at most two are read, only when `len` says they are there.
    unsafe {
        let dec = &(*obj).dec;
        if dec.flags & MPD_SPECIAL != 0 || !(1..=2).contains(&dec.len) || dec.data.is_null() {
            return None;
        }
        let mut coefficient = u128::from(*dec.data);
        if dec.len == 2 {
            coefficient += u128::from(*dec.data.add(1)) * u128::from(MPD_RADIX);
        }
        Some(DecimalParts { negative: dec.flags & MPD_NEG != 0, coefficient, exponent: dec.exp as i64 })
    }
}
