"""Perceptual distances of the look term (LPIPS-VGG, MS-SSIM) and the TorchScript weights reader."""
