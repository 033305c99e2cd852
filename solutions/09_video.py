"""Solutions to the exercises of notebooks/09_video.ipynb."""


def frame_indices(total, n):
    n = min(n, total)
    return [i * total // n for i in range(n)]


def video_text(timestamps, tokens_per_frame):
    frames = [f"{int(t // 60):02d}:{int(t % 60):02d} <start_of_image>" + "<|video|>" * tokens_per_frame
              + "<end_of_image>" for t in timestamps]
    return " ".join(frames)
