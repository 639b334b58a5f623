// SPDX-License-Identifier: MIT OR Apache-2.0
//! What the examples share: `element.property=value` arguments applied to a parsed pipeline,
//! and the bus loop that runs a pipeline to EOS.
#![allow(dead_code)]

use gst::prelude::*;
use gstalpr::event::{EVENT_STRUCT, PlateEvent};

/// Splits arguments into positional ones and `element.property=value` settings.
pub fn split_args(args: impl Iterator<Item = String>) -> (Vec<String>, Vec<String>) {
    args.partition(|a| !a.contains('='))
}

/// The bin's element named `name`, or the first one made by the factory `name`.
pub fn find(bin: &impl IsA<gst::Bin>, name: &str) -> Option<gst::Element> {
    bin.iterate_recurse()
        .into_iter()
        .flatten()
        .find(|e| e.factory().is_some_and(|f| f.name() == name) || e.name() == name)
}

/// Sets `prop` of `el` from its string form; the error says what was wrong instead of the
/// panic of `set_property_from_str`.
pub fn set(el: &gst::Element, prop: &str, value: &str) -> Result<(), String> {
    let name = el.name();
    let pspec = el
        .find_property(prop)
        .ok_or(format!("{name} has no property {prop}"))?;
    let v = gst::glib::Value::deserialize_with_pspec(value, &pspec).map_err(|_| {
        format!(
            "{value:?} is not a valid {} for {name}.{prop}",
            pspec.value_type()
        )
    })?;
    el.set_property_from_value(prop, &v);
    Ok(())
}

/// Sets each `element.property=value` on the bin's element named (or of the factory)
/// `element`; the error names the argument that could not be applied.
pub fn apply(bin: &impl IsA<gst::Bin>, props: &[String]) -> Result<(), String> {
    for p in props {
        let (target, value) = p
            .split_once('=')
            .ok_or(format!("{p}: expected element.property=value"))?;
        let (name, prop) = target
            .split_once('.')
            .ok_or(format!("{p}: expected element.property=value"))?;
        let el = find(bin, name).ok_or(format!("{p}: no element {name} in the pipeline"))?;
        set(&el, prop, value).map_err(|e| format!("{p}: {e}"))?;
    }
    Ok(())
}

/// Pops `bus` messages until EOS. An error message ends the run with an error naming its
/// source; warnings are printed to stderr; every other message goes to `on_message`, which may
/// end the run with an error of its own.
pub fn run_to_eos(
    bus: &gst::Bus,
    mut on_message: impl FnMut(&gst::Message) -> Result<(), String>,
) -> Result<(), String> {
    loop {
        let Some(msg) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match msg.view() {
            gst::MessageView::Eos(_) => return Ok(()),
            gst::MessageView::Error(e) => {
                return Err(format!(
                    "{}: {} ({})",
                    e.src()
                        .map(|s| s.path_string().to_string())
                        .unwrap_or_default(),
                    e.error(),
                    e.debug().unwrap_or_default()
                ));
            }
            gst::MessageView::Warning(w) => {
                eprintln!("warning: {} ({:?})", w.error(), w.debug())
            }
            _ => on_message(&msg)?,
        }
    }
}

/// The plate event of an `alpr-plate-event` element message (alprocr posts one per event).
pub fn plate_event(msg: &gst::Message) -> Option<PlateEvent> {
    let s = msg.structure()?;
    if msg.type_() != gst::MessageType::Element || s.name() != EVENT_STRUCT {
        return None;
    }
    PlateEvent::from_structure(s).ok().map(|(ev, _)| ev)
}
