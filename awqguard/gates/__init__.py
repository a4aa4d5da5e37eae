"""Gate engine: RAG pipeline, metrics, gate policy, Problem-Map symptoms and fixes."""
