// SPDX-License-Identifier: MIT OR Apache-2.0
//! `element.property=value` arguments of the examples, applied to a parsed pipeline.

use gst::prelude::*;

/// Splits arguments into positional ones and `element.property=value` settings.
pub fn split_args(args: impl Iterator<Item = String>) -> (Vec<String>, Vec<String>) {
    args.partition(|a| !a.contains('='))
}

/// Sets each `element.property=value` on the pipeline's element named (or of the factory)
/// `element`; the error names the argument that could not be applied.
pub fn apply(pipeline: &gst::Pipeline, props: &[String]) -> Result<(), String> {
    for p in props {
        let (target, value) = p
            .split_once('=')
            .ok_or(format!("{p}: expected element.property=value"))?;
        let (name, prop) = target
            .split_once('.')
            .ok_or(format!("{p}: expected element.property=value"))?;
        let el = pipeline
            .iterate_recurse()
            .into_iter()
            .flatten()
            .find(|e| e.factory().is_some_and(|f| f.name() == name) || e.name() == name)
            .ok_or(format!("{p}: no element {name} in the pipeline"))?;
        let pspec = el
            .find_property(prop)
            .ok_or(format!("{p}: {name} has no property {prop}"))?;
        let v = gst::glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
            format!(
                "{p}: {value:?} is not a valid {} for {name}.{prop}",
                pspec.value_type()
            )
        })?;
        el.set_property_from_value(prop, &v);
    }
    Ok(())
}
