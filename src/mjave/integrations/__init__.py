"""Adapters that put mjave into other ecosystems' pipelines (`mjave.integrations.spacy`: the
`mjave` spaCy component). Each adapter goes through the one `Extractor` and imports its library
only when it is itself imported."""
