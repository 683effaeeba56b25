"""What a person sees: the sketch pad and its results panel (ipycanvas, ipywidgets), figures
(plotly image grids, loss curves, UMAP panels; PNG export without a browser) and the Voilà demo
app. The only package below ``cli`` that imports widget libraries."""
