//! The plainest embedding of wasmtime that runs a modal guest, for the
//! floors the benchmarks print beside their figures: the host's engine
//! settings (pooling defaults, epoch interruption) and none of its code.

use std::time::{Duration, Instant};
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker, Val};
use wasmtime::{Engine, Store};

/// A store's state: WASI and nothing else.
pub struct Bare {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
}

impl wasmtime_wasi::WasiView for Bare {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An engine set up as the host's with its default pooling limits.
pub fn engine() -> Engine {
    let limits = modal_host::PoolingLimits::default();
    let mut pool = wasmtime::PoolingAllocationConfig::new();
    pool.total_component_instances(limits.total_component_instances)
        .total_core_instances(limits.total_core_instances)
        .total_memories(limits.total_memories)
        .total_tables(limits.total_tables)
        .total_stacks(limits.total_stacks)
        .decommit_batch_size(limits.decommit_batch)
        .table_keep_resident(limits.table_keep_resident);
    let mut config = wasmtime::Config::new();
    config
        .epoch_interruption(true)
        .allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).expect("engine")
}

/// A linked guest whose functions run each on a fresh instance.
pub struct BareApp {
    engine: Engine,
    pre: InstancePre<Bare>,
    call: ComponentExportIndex,
    enter: Option<ComponentExportIndex>,
}

impl BareApp {
    /// Links `component`: WASI as the host links it, the modal imports as
    /// traps (the functions measured use none).
    pub fn new(engine: &Engine, component: &Component) -> BareApp {
        let mut linker = Linker::<Bare>::new(engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).expect("links WASI");
        linker
            .define_unknown_imports_as_traps(component)
            .expect("links the rest");
        let export = |interface: &str, name: &str| {
            let (_, interface) = component.get_export(None, interface)?;
            component.get_export_index(Some(&interface), name)
        };
        BareApp {
            engine: engine.clone(),
            pre: linker.instantiate_pre(component).expect("links"),
            call: export("modal:app/function@0.1.0", "call").expect("call export"),
            enter: export("modal:app/lifecycle@0.1.0", "enter"),
        }
    }

    /// What a cold call does: a store with an empty WASI context, the
    /// instance, its `enter` hook, `call(function)` with no input, and the
    /// drop. Returns the time of each of those five steps.
    pub async fn cold_call(&self, function: &str) -> [Duration; 5] {
        let mut steps = [Duration::ZERO; 5];
        let mut t = Instant::now();
        let mut step = |i: usize| {
            steps[i] = t.elapsed();
            t = Instant::now();
        };
        let bare = Bare {
            wasi: wasmtime_wasi::WasiCtx::builder().build(),
            table: wasmtime::component::ResourceTable::new(),
        };
        let mut store = Store::new(&self.engine, bare);
        store.set_epoch_deadline(u64::MAX / 2);
        step(0);
        let instance = self
            .pre
            .instantiate_async(&mut store)
            .await
            .expect("instantiates");
        step(1);
        let mut out = [Val::Bool(false)];
        if let Some(enter) = &self.enter {
            let enter = instance.get_func(&mut store, *enter).expect("enter");
            enter
                .call_async(&mut store, &[], &mut out)
                .await
                .expect("enter runs");
        }
        step(2);
        let call = instance.get_func(&mut store, self.call).expect("call");
        let input = [Val::String(function.into()), Val::List(Vec::new())];
        call.call_async(&mut store, &input, &mut out)
            .await
            .expect("runs");
        assert!(
            matches!(&out[0], Val::Result(Ok(_))),
            "{function}: {:?}",
            out[0]
        );
        step(3);
        drop(store);
        step(4);
        steps
    }
}
