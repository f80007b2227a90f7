;; A component that exports nothing the host can run.
(component)
