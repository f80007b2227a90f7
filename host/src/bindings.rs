//! Host bindings of the `modal:app/functions` world (generated from `wit/`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "modal:app/functions",
    exports: { default: async },
});

pub(crate) use exports::modal::app::function::AppSpec as RawSpec;
pub(crate) use exports::modal::app::function::{
    CallError, FunctionKind as RawKind, FunctionSpec as RawFunction, Guest as FunctionGuest,
    GuestIndices as FunctionIndices, Schedule as RawSchedule,
};
pub(crate) use exports::modal::app::lifecycle::{
    Guest as LifecycleGuest, GuestIndices as LifecycleIndices,
};

impl modal::app::context::Host for crate::sandbox::Sandbox {
    fn run_id(&mut self) -> Option<String> {
        self.run_id.clone()
    }
}
