//! The browser entry point. Everything else lives in `app`.

// The page's view type (the layout with the live sidebar) is deeper than
// the default limit lets rustc lay out when building the WASM.
#![recursion_limit = "256"]

/// Called by the hydration script once the WASM module has loaded.
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
