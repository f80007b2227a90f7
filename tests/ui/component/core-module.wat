;; A core module (what `wasm32-unknown-unknown` or `wasm32-wasip1` builds),
;; not a component.
(module
  (func (export "square") (param i32) (result i32)
    local.get 0
    local.get 0
    i32.mul))
