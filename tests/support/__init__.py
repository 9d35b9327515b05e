"""What the tests share, one concern a module.

- checkout: the checkout under test and its `faust` command
- cli: the app's commands run as a user runs them, each in a process of its own
- records: test records, their keys, and what the deployed model says of them; the Source double
- kafka: a plain Kafka client, and where records are on the pipeline's topics
- record_batches: Kafka record batches from any bytes, as a hostile or buggy producer writes them
- worker: a `faust -A iris_app worker` process, and what it says of itself
- proxy: a TCP proxy that cuts the workers off from the broker
- cluster_ops: a Kafka cluster's partition leaders and group coordinator, hand-overs, a broker brought back
- tap: an HTTP proxy that notes the headers one worker's request brings another, or falls silent
- traffic: records flowing at a steady rate, and which of them came out classified
- counts: window counts read until they reach the truth, and why one falls short
- models: the deploy command, and the workers' model pages
- h2o_reference: H2O's own predictions, the reference for the scorer
- tls: a certificate authority and a broker certificate for a SASL_SSL test cluster
"""
