"""Procedural drone and robot scenes rendered headless on the CPU into (RGB, metric depth) training data.

Scenes (open fields, street canyons, hallways, furnished rooms and their close-ups, hilly countryside) are
drawn from a seed (`Scene.random`), rendered with moderngl on EGL (`Renderer`) with photo textures from
installed sample images where available (textures.py), viewed from random cameras or along smooth flights
(`flight`), and cached on disk as npz shards (`make_dataset`, read back with `SceneDataset`). Depth is the
camera z-depth in metres (REP 118) from the z-buffer; the sky is +inf and flagged invalid. Conventions for
poses and intrinsics are in camera.py. `python -m xlstm_ros.sim.scenes --help` renders a montage and
times frames.
"""
from .camera import Camera, depth_from_window_z
from .config import INDOOR_KINDS, KINDS, SceneConfig
from .dataset import SceneDataset, flight, make_dataset, render_dataset, write_frames
from .geometry import Material, MeshBuilder, Pattern
from .layout import Lighting, Scene
from .motion import flight_cameras, random_camera
from .paths import FlightPath, Interior
from .renderer import Frame, Renderer, RendererError
from .textures import PhotoTextures, load_photo_textures

__all__ = ["INDOOR_KINDS", "KINDS", "Camera", "FlightPath", "Frame", "Interior", "Lighting", "Material", "MeshBuilder",
           "Pattern", "PhotoTextures", "Renderer", "RendererError", "Scene", "SceneConfig", "SceneDataset",
           "depth_from_window_z", "flight", "flight_cameras", "load_photo_textures", "make_dataset", "random_camera",
           "render_dataset", "write_frames"]
