;; A component importing an interface the host does not provide.
(component
  (import "acme:payments/charge@1.0.0" (instance
    (export "charge" (func (param "cents" u64) (result bool))))))
