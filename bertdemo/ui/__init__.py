"""The Gradio layer: layout and wiring only (demo.build_demo assembles the tabs)."""
