//! Geometry operators on GeoJSON values: within, intersects, disjoint (`$geoWithin` /
//! `$geoIntersects`), dwithin / distance_lt (`$centerSphere` in meters) and near (top
//! level only, as MongoDB requires).
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyFloat, PyList, PyTuple};

use super::ops::Op;
use super::support::*;
use super::Leaf;

const EARTH_RADIUS_M: f64 = 6378100.0;

const GEO_ALL: &[&str] = &["Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon"];

const GEO_AREAS: &[&str] = &["Polygon", "MultiPolygon"];

const GEO_POINT: &[&str] = &["Point"];

type Geometry<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>, Option<Bound<'py, PyAny>>);

/// Validate a GeoJSON geometry; returns (type, coordinates, crs).
fn check_geometry<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Geometry<'py>> {
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry {{'type': ..., 'coordinates': [...]}}, got {}",
                type_name(val)
            ),
        ));
    };
    for key in d.keys() {
        if !key_in(&key, &["type", "coordinates", "crs"])? {
            return Err(spec_error(
                py,
                path,
                format!(
                    "GeoJSON geometry has unexpected key {}; only 'type', 'coordinates' and 'crs' are allowed",
                    repr(&key)
                ),
            ));
        }
    }
    let kind = d.get_item(intern!(py, "type"))?;
    let kind_ok = match &kind {
        Some(k) => key_in(k, allowed)?,
        None => false,
    };
    let (Some(kind), true) = (kind.clone(), kind_ok) else {
        return Err(spec_error(
            py,
            path,
            format!(
                "operator '{op}' expects a GeoJSON geometry of type {}, got type {}",
                allowed.join(" or "),
                opt_repr(&kind)
            ),
        ));
    };
    let coordinates = match d.get_item(intern!(py, "coordinates"))? {
        Some(c) if c.is_instance_of::<PyList>() || c.is_instance_of::<PyTuple>() => c,
        other => {
            let shown = other.as_ref().map_or_else(|| "NoneType".to_owned(), type_name);
            return Err(spec_error(py, path, format!("GeoJSON 'coordinates' must be a list, got {shown}")));
        }
    };
    Ok((kind, coordinates, d.get_item(intern!(py, "crs"))?))
}

/// A clean copy of a validated GeoJSON geometry (only its known keys).
fn geometry<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<Bound<'py, PyDict>> {
    let (kind, coordinates, crs) = check_geometry(py, op, val, path, allowed)?;
    let out = PyDict::new(py);
    out.set_item(intern!(py, "type"), kind)?;
    out.set_item(intern!(py, "coordinates"), coordinates)?;
    if let Some(crs) = crs {
        out.set_item(intern!(py, "crs"), crs)?;
    }
    Ok(out)
}

fn payload<'py>(
    py: Python<'py>,
    op: &str,
    val: &Bound<'py, PyAny>,
    path: &Path<'_>,
    allowed: &[&str],
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyAny>)> {
    let Ok(d) = val.downcast::<PyDict>() else {
        return Err(spec_error(
            py,
            path,
            format!("operator '{op}' expects a dict with keys {}, got {}", allowed.join(", "), type_name(val)),
        ));
    };
    for key in d.keys() {
        if !key_in(&key, allowed)? {
            return Err(spec_error(
                py,
                path,
                format!("operator '{op}' got unexpected key {}; allowed: {}", repr(&key), allowed.join(", ")),
            ));
        }
    }
    let Some(geometry) = d.get_item(intern!(py, "geometry"))? else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a 'geometry' (a GeoJSON Point)")));
    };
    Ok((d.clone(), geometry))
}

fn shapes<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    let allowed = if op == Op::Within { GEO_AREAS } else { GEO_ALL };
    let geom = geometry(py, leaf.name, &leaf.val, leaf.path, allowed)?;
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$geometry"), geom)?;
    match op {
        Op::Within => field_cond(py, leaf.key, intern!(py, "$geoWithin"), inner),
        Op::Intersects => field_cond(py, leaf.key, intern!(py, "$geoIntersects"), inner),
        _ => {
            let cond = field_cond(py, leaf.key, intern!(py, "$geoIntersects"), inner)?;
            wrap(py, intern!(py, "$nor"), vec![cond])
        }
    }
}

fn within_distance<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let (op, path) = (leaf.name, leaf.path);
    let (p, g) = payload(py, op, &leaf.val, path, &["geometry", "distance"])?;
    let (_, coords, _) = check_geometry(py, op, &g, path, GEO_POINT)?;
    let Some(distance) = p.get_item(intern!(py, "distance"))? else {
        return Err(spec_error(py, path, format!("operator '{op}' needs a 'distance' in meters")));
    };
    let meters = need_number(py, op, "distance", &distance, path)?;
    let sphere = PyList::new(py, [coords, PyFloat::new(py, meters / EARTH_RADIUS_M).into_any()])?;
    let inner = PyDict::new(py);
    inner.set_item(intern!(py, "$centerSphere"), sphere)?;
    field_cond(py, leaf.key, intern!(py, "$geoWithin"), inner)
}

fn near<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>) -> PyResult<Bound<'py, PyDict>> {
    let (op, path) = (leaf.name, leaf.path);
    if !leaf.top {
        return Err(nested_only_top(py, op, path));
    }
    let (p, g) = payload(py, op, &leaf.val, path, &["geometry", "max_distance", "min_distance"])?;
    let near = PyDict::new(py);
    near.set_item(intern!(py, "$geometry"), geometry(py, op, &g, path, GEO_POINT)?)?;
    if let Some(m) = p.get_item(intern!(py, "max_distance"))? {
        near.set_item(intern!(py, "$maxDistance"), need_number(py, op, "max_distance", &m, path)?)?;
    }
    if let Some(m) = p.get_item(intern!(py, "min_distance"))? {
        near.set_item(intern!(py, "$minDistance"), need_number(py, op, "min_distance", &m, path)?)?;
    }
    field_cond(py, leaf.key, intern!(py, "$near"), near)
}

pub(super) fn compile<'py>(py: Python<'py>, leaf: &Leaf<'_, 'py>, op: Op) -> PyResult<Bound<'py, PyDict>> {
    match op {
        Op::Within | Op::Intersects | Op::Disjoint => shapes(py, leaf, op),
        Op::Dwithin | Op::DistanceLt => within_distance(py, leaf),
        _ => near(py, leaf),
    }
}
