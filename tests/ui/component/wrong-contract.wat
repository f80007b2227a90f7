;; A component exporting `modal:app/function` with the wrong shape: its
;; `describe` takes an argument and returns nothing.
(component
  (core module $m
    (func (export "describe") (param i32)))
  (core instance $i (instantiate $m))
  (func $describe (param "x" u32) (canon lift (core func $i "describe")))
  (instance $function (export "describe" (func $describe)))
  (export "modal:app/function@0.1.0" (instance $function)))
