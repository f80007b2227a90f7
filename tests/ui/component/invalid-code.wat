;; A component whose core code does not validate: the function returns
;; nothing but declares an i32 result.
(component
  (core module
    (func (result i32))))
