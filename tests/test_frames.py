"""``simpsons data frames``: one frame every so many seconds of each video, named by episode and time."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from simpsons_classifier.cli import main
from simpsons_classifier.data.frames import extract_frames, find_videos
from simpsons_classifier.data.images import load_rgb
from simpsons_classifier.data.split import source_group

FPS = 10


def write_video(path: Path, seconds: int = 3) -> Path:
    """``seconds`` of video at 10 frames a second; frame i is grey at level 8 i, so a frame tells its time."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (64, 48))
    assert writer.isOpened()
    for index in range(seconds * FPS):
        writer.write(np.full((48, 64, 3), 8 * index, np.uint8))
    writer.release()
    return path


def test_one_frame_every_so_many_seconds_named_by_episode_and_time(tmp_path):
    video = write_video(tmp_path / "s01e01.mp4")
    result = extract_frames([video], tmp_path / "frames", every_seconds=1.0, progress=False)
    names = sorted(p.name for p in (tmp_path / "frames").iterdir())
    assert names == ["s01e01__000000.0s.jpg", "s01e01__000001.0s.jpg", "s01e01__000002.0s.jpg"]
    assert result.written == {video: 3} and result.frames == 3 and not result.unreadable
    for name, index in zip(names, (0, 10, 20)):  # the frame shown at that time, not another
        assert abs(np.asarray(load_rgb(tmp_path / "frames" / name)).mean() - 8 * index) < 4
        assert source_group(name) == "s01e01"  # a group split keeps an episode's frames on one side
    extract_frames([video], tmp_path / "half", every_seconds=0.5, progress=False)
    assert len(list((tmp_path / "half").iterdir())) == 6


def write_shots(path: Path) -> Path:
    """Three 2-second shots at 10 frames a second on a photo: a mouth (6x4 px) opening and closing every 0.2 s; a
    second character (a 36 px square) beside the first on the same background; another background."""
    import skimage.data

    street, kitchen = (cv2.resize(getattr(skimage.data, name)()[..., :3], (160, 90)) for name in ("astronaut", "coffee"))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (160, 90))
    for shot in range(3):
        for index in range(2 * FPS):
            picture = (kitchen if shot == 2 else street).copy()
            picture[40:44, 77:83] = 0 if index // 2 % 2 else 255  # the mouth
            if shot == 1:
                picture[27:63, 110:146] = (40, 200, 250)
            writer.write(np.ascontiguousarray(picture[..., ::-1]))
    writer.release()
    return path


def test_frames_of_the_same_shot_are_left_out_and_each_cut_kept(tmp_path, capsys):
    video = write_shots(tmp_path / "e01.mp4")
    result = extract_frames([video], tmp_path / "shots", every_seconds=0.5, progress=False)
    assert sorted(p.name for p in (tmp_path / "shots").iterdir()) == [
        "e01__000000.0s.jpg", "e01__000002.0s.jpg", "e01__000004.0s.jpg"]
    assert result.written == {video: 3} and result.alike == {video: 9}
    every = extract_frames([video], tmp_path / "every", every_seconds=0.5, min_change=0, progress=False)
    assert every.written == {video: 12} and not every.alike
    assert main(["data", "frames", str(video), "--every", "0.5", "--out", str(tmp_path / "cli")]) == 0
    printed = capsys.readouterr().out
    assert "3 frames of 1 video(s)" in printed and "9 left out as like the frame before (--min-change)" in printed


def test_unreadable_videos_are_named_with_why_and_the_others_go_on(tmp_path, capsys):
    good = write_video(tmp_path / "good.mp4", seconds=1)
    (tmp_path / "broken.mp4").write_text("not a video")
    out = tmp_path / "frames"
    assert main(["data", "frames", str(good), str(tmp_path / "broken.mp4"), str(tmp_path / "gone.mp4"),
                 "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "1 frames of 1 video(s)" in captured.out and "2 video(s) could not be read" in captured.out
    assert f"{tmp_path / 'broken.mp4'}: not a video" in captured.err
    assert f"{tmp_path / 'gone.mp4'}: does not exist" in captured.err
    assert [p.name for p in out.iterdir()] == ["good__000000.0s.jpg"]
    assert main(["data", "frames", str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "none")]) == 1
    assert main(["data", "frames", str(tmp_path / "frames"), "--out", str(tmp_path / "none")]) == 2
    assert "no video files in" in capsys.readouterr().err
    for too_often in (0, 0.05):  # 0.05: two frames would share a name, written to the tenth of a second
        with pytest.raises(ValueError, match=r"must be at least 0.1 s \(frames are named to the tenth of a second"):
            extract_frames([good], out, every_seconds=too_often, progress=False)


def test_videos_of_the_same_name_in_two_folders_keep_their_frames_apart(tmp_path):
    for season in ("season1", "season2"):
        write_video(tmp_path / "videos" / season / "e01.mp4", seconds=1)
    (tmp_path / "videos" / "notes.txt").write_text("not searched: not a video suffix")
    videos = find_videos([tmp_path / "videos"])
    assert [v.relative_to(tmp_path / "videos").as_posix() for v in videos] == ["season1/e01.mp4", "season2/e01.mp4"]
    extract_frames(videos, tmp_path / "frames", progress=False)
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["season1-e01__000000.0s.jpg",
                                                                      "season2-e01__000000.0s.jpg"]
    twins = [write_video(tmp_path / side / "season1" / "e01.mp4", seconds=1) for side in ("a", "b")]
    with pytest.raises(ValueError, match="videos whose frames would share names: .*a/season1/e01.mp4, "
                                         ".*b/season1/e01.mp4; rename one of each"):
        extract_frames(twins, tmp_path / "clash", progress=False)
