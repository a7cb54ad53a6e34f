//! One model's mapping settings, bound once: `to_doc` (pydantic's dump, then the mapping
//! pass) and `from_doc` (the pass, then pydantic's validation), each one native call, so
//! a mapper's hot calls run no Python frame of ours between pydantic and the pass.
//! Twin: `python/cqrs_ddd_persistence_mongo/_pure/codec.py`.
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyType};

use crate::errors::{guarded, ErrorKind};
use crate::mapping::{map_from_doc, map_to_doc};

#[pyclass(frozen, module = "cqrs_ddd_persistence_mongo._native")]
pub struct ModelCodec {
    model_cls: Py<PyType>,
    /// the model's `__pydantic_serializer__.to_python` and `__pydantic_validator__.validate_python`
    to_python: PyObject,
    validate: PyObject,
    /// `{"exclude": fields}` for the dump, or None
    dump_kwargs: Option<Py<PyDict>>,
    id_field: Py<PyString>,
    field_map: Option<Py<PyDict>>,
    reverse_map: Option<Py<PyDict>>,
    versioned: bool,
    owned_dump: bool,
}

#[pymethods]
impl ModelCodec {
    #[new]
    #[pyo3(signature = (model_cls, id_field, field_map, reverse_map, versioned, exclude, owned_dump))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model_cls: &Bound<'_, PyType>,
        id_field: &Bound<'_, PyString>,
        field_map: Option<&Bound<'_, PyDict>>,
        reverse_map: Option<&Bound<'_, PyDict>>,
        versioned: bool,
        exclude: Option<&Bound<'_, PyAny>>,
        owned_dump: bool,
    ) -> PyResult<Self> {
        let dump_kwargs = match exclude {
            Some(fields) => {
                let kwargs = PyDict::new(py);
                kwargs.set_item(intern!(py, "exclude"), fields)?;
                Some(kwargs.unbind())
            }
            None => None,
        };
        Ok(ModelCodec {
            model_cls: model_cls.clone().unbind(),
            to_python: model_cls
                .getattr(intern!(py, "__pydantic_serializer__"))?
                .getattr(intern!(py, "to_python"))?
                .unbind(),
            validate: model_cls
                .getattr(intern!(py, "__pydantic_validator__"))?
                .getattr(intern!(py, "validate_python"))?
                .unbind(),
            dump_kwargs,
            id_field: id_field.clone().unbind(),
            field_map: field_map.map(|m| m.clone().unbind()),
            reverse_map: reverse_map.map(|m| m.clone().unbind()),
            versioned,
            owned_dump,
        })
    }

    /// The document of `entity`: an instance of exactly the model class is dumped by its
    /// serializer (whose fresh dict becomes the document when `owned_dump`); any other
    /// (a subclass instance) by its own `model_dump`.
    fn to_doc<'py>(&self, py: Python<'py>, entity: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyDict>> {
        guarded(ErrorKind::Document, || {
            let kwargs = self.dump_kwargs.as_ref().map(|k| k.bind(py));
            let field_map = self.field_map.as_ref().map(|m| m.bind(py));
            let id_field = self.id_field.bind(py);
            if entity.get_type().is(self.model_cls.bind(py)) {
                let data = self.to_python.bind(py).call((entity,), kwargs)?;
                return map_to_doc(py, &data, id_field, field_map, self.versioned, self.owned_dump);
            }
            let data = entity.call_method(intern!(py, "model_dump"), (), kwargs)?;
            map_to_doc(py, &data, id_field, field_map, self.versioned, false)
        })
    }

    /// The entity of a stored document, validated by the model.
    #[pyo3(name = "from_doc")]
    fn entity_of<'py>(&self, py: Python<'py>, doc: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        guarded(ErrorKind::Document, || {
            let reverse_map = self.reverse_map.as_ref().map(|m| m.bind(py));
            let data = map_from_doc(py, doc, self.id_field.bind(py), reverse_map, self.versioned)?;
            self.validate.bind(py).call1((data,))
        })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<ModelCodec>()
}
