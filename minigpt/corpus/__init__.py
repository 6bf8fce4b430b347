"""Text corpora to token files, without Lightning: where a corpus file comes from (`sources`),
reading it in line-aligned chunks (`streaming`), tokenizing it with worker processes (`pool`)
into the on-disk token cache (`cache`)."""
