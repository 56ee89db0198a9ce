"""Delivery: the outbox dispatcher as a chain of small stages, and the seam channels implement.

- ``notifier``: the one small protocol a channel implements (``Notifier``), what it is given
  (``Delivery``) and what it answers (``DeliveryResult`` with a ``FailureReason``).
- ``retry``: the one retry table, keyed by ``FailureReason``.
- ``limits`` and ``policy``: rate limits, circuit breakers, bundling and retry spacing.
- ``stages``, ``record`` and ``dispatcher``: the stages and their composition, in order.

A new channel is one package under ``adapters/`` whose notifiers map every error they meet
into a ``FailureReason`` at their own boundary.
"""
