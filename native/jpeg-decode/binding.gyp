{
  "targets": [
    {
      "target_name": "jpeg_decode",
      "sources": ["jpeg_decode.c", "linear_reduce.c"],
      "libraries": ["-ljpeg"],
      "cflags": ["-O3", "-Wall", "-Wextra"]
    }
  ]
}
