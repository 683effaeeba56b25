"""Sketch in, photos out: strokes, search and the gallery index.

``strokes`` (free-hand strokes rasterised like the training sketches), ``topk`` (exact chunked
search and faiss approximate search), ``index`` (``GalleryIndex``: a gallery's embeddings saved
with exact + approximate search), ``live`` (``SketchSearcher``: drawing -> query embedding ->
top-k photos, latest query wins), ``feedback`` (``refine``: Rocchio relevance feedback from
photos marked yes / no).
"""
