//! The operator vocabulary of the compiler: aliases, built-in names, string operators and
//! the operators MongoDB cannot express (twin: `specifications/operators.py`).

pub fn alias(op: &str) -> &str {
    match op {
        "=" => "eq",
        "!=" => "ne",
        ">" => "gt",
        ">=" => "gte",
        "<" => "lt",
        "<=" => "lte",
        _ => op,
    }
}

pub fn no_equivalent(op: &str) -> Option<&'static str> {
    Some(match op {
        "json_contained_by" => "MongoDB cannot test that a document's keys are a subset of a value without $expr; use json_contains on the keys you need",
        "contains_geom" => "MongoDB has no 'geometry contains value' operator; use within with the roles swapped",
        "touches" => "MongoDB has no DE-9IM 'touches' predicate; use intersects",
        "crosses" => "MongoDB has no DE-9IM 'crosses' predicate; use intersects",
        "overlaps" => "MongoDB has no DE-9IM 'overlaps' predicate; use intersects",
        "geom_equals" => "MongoDB has no spatial equality; use eq to match the exact GeoJSON document",
        "bbox_intersects" => "MongoDB has no bounding-box-of-geometry test; use intersects with a Polygon",
        _ => return None,
    })
}

/// (kind, $options) of each string operator.
pub fn string_op(op: &str) -> Option<(&'static str, &'static str)> {
    Some(match op {
        "contains" => ("contains", ""),
        "icontains" => ("contains", "i"),
        "startswith" => ("startswith", ""),
        "istartswith" => ("startswith", "i"),
        "endswith" => ("endswith", ""),
        "iendswith" => ("endswith", "i"),
        "like" => ("like", "s"),
        "ilike" => ("like", "is"),
        "not_like" => ("like", "s"),
        "regex" => ("regex", ""),
        "iregex" => ("regex", "i"),
        _ => return None,
    })
}

pub fn is_builtin(op: &str) -> bool {
    string_op(op).is_some()
        || matches!(
            op,
            "eq" | "ne"
                | "gt"
                | "gte"
                | "lt"
                | "lte"
                | "in"
                | "not_in"
                | "all"
                | "between"
                | "not_between"
                | "is_null"
                | "is_not_null"
                | "is_empty"
                | "is_not_empty"
                | "json_contains"
                | "json_contained_by"
                | "json_has_key"
                | "json_has_any"
                | "json_has_all"
                | "json_path_exists"
                | "size"
                | "within"
                | "intersects"
                | "disjoint"
                | "contains_geom"
                | "touches"
                | "crosses"
                | "overlaps"
                | "geom_equals"
                | "bbox_intersects"
                | "distance_lt"
                | "dwithin"
                | "near"
                | "fts"
                | "fts_phrase"
        )
}

/// Operators whose `val` may be left out (`is_null` alone means `is_null: True`).
pub fn is_value_optional(op: &str) -> bool {
    matches!(op, "is_null" | "is_not_null" | "is_empty" | "is_not_empty")
}
