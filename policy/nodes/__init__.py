"""The node view: which nodes are judged (:mod:`.state`), what each offers (:mod:`.facts`), decoding once
(:mod:`.decode`)."""
